import { type ContractCheck, ContractViolation } from '../check-context.ts';
import { describeResponse, problemDifference } from '../contract-response.ts';

/** A request without `Idempotency-Key` is refused with a 400 problem, not executed. */
export const refusesMissingKey: ContractCheck = {
  id: 'missing-key',
  name: 'refuses a request without Idempotency-Key (400 problem)',
  async run(context) {
    const response = await context.send('sending a request without a key', {
      keys: [],
      body: context.newBody().body,
    });
    const difference = problemDifference(response, 400);
    if (difference) {
      throw new ContractViolation(
        `expected a 400 application/problem+json, got ${difference}: ${describeResponse(response)}`,
      );
    }
    return { status: 'passed', detail: describeResponse(response) };
  },
};
