import { type ContractCheck, ContractViolation } from '../check-context.ts';
import { expectFreshSuccess } from '../contract-expectations.ts';
import { describeResponse, problemDifference } from '../contract-response.ts';

/**
 * A used key sent with another body is refused with a 422 problem and executes nothing: the
 * client reused a key by mistake, and replaying the first response would tell it that an
 * operation it never made succeeded.
 */
export const refusesKeyReuse: ContractCheck = {
  id: 'key-reuse',
  name: 'refuses a used key with another body (422 problem)',
  async run(context) {
    const key = context.newKey();
    const { n, body } = context.newBody();
    const first = await context.send('sending the first request', { keys: [key], body });
    expectFreshSuccess(context, first, 'the first request');
    const other = await context.send('reusing the key with another body', {
      keys: [key],
      body: context.options.body(n + 1),
    });
    const difference = problemDifference(other, 422);
    if (difference) {
      throw new ContractViolation(
        `expected the key reused with another body to get a 422 application/problem+json, ` +
          `got ${difference}: ${describeResponse(other)}`,
      );
    }
    const effects = await context.expectEffects(key, 1, 'a request and its key reused');
    return { status: 'passed', detail: `${describeResponse(other)}${effects}` };
  },
};
