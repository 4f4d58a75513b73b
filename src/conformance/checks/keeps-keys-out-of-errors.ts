import { type ContractCheck, ContractViolation } from '../check-context.ts';
import { describeResponse, echoedKey } from '../contract-response.ts';

/**
 * No error response (4xx, 5xx) repeats the key its request carried, in its body or its headers:
 * a key can act as the bearer of someone's response, so it must not end up in logs and error
 * trackers that store error bodies. Reads every error response the other checks received (the
 * repeated header, the reused key, 409s...).
 */
export const keepsKeysOutOfErrors: ContractCheck = {
  id: 'keys-in-errors',
  name: 'keeps keys out of error responses',
  async run(context) {
    const seen = context.client.errorResponses;
    if (seen.length === 0) {
      return { status: 'skipped', detail: 'no error response to a request with a key came back' };
    }
    const echo = seen.find(({ keys, response }) => echoedKey(response, keys));
    if (echo) {
      throw new ContractViolation(
        `an error response repeated its request's key (${echo.keys.join(', ')}): ` +
          describeResponse(echo.response),
      );
    }
    return {
      status: 'passed',
      detail: `none of ${seen.length} error responses (${statuses(seen)}) contained its key`,
    };
  },
};

function statuses(seen: readonly { response: { status: number } }[]): string {
  const counts = new Map<number, number>();
  for (const { response } of seen) {
    counts.set(response.status, (counts.get(response.status) ?? 0) + 1);
  }
  return [...counts].map(([status, count]) => `${count}x ${status}`).join(', ');
}
