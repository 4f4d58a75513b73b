import { type ContractCheck, ContractViolation } from '../check-context.ts';
import { describeResponse, problemDifference } from '../contract-response.ts';

/**
 * `Idempotency-Key` sent twice is refused with a 400 problem: a server that picked one of the
 * values would guess which operation the client meant.
 */
export const refusesRepeatedKeyHeader: ContractCheck = {
  id: 'repeated-key-header',
  name: 'refuses an Idempotency-Key header sent twice (400 problem)',
  async run(context) {
    const keys = [context.newKey(), context.newKey()];
    const response = await context.send('sending Idempotency-Key twice', {
      keys,
      body: context.newBody().body,
    });
    const difference = problemDifference(response, 400);
    if (difference) {
      throw new ContractViolation(
        `expected a 400 application/problem+json, got ${difference}: ${describeResponse(response)}`,
      );
    }
    let effects = '';
    for (const key of keys) effects = await context.expectEffects(key, 0, 'the refused request');
    return { status: 'passed', detail: `${describeResponse(response)}${effects}` };
  },
};
