import type { ContractCheck } from '../check-context.ts';
import { expectFreshSuccess, expectReplayOf } from '../contract-expectations.ts';
import { describeResponse } from '../contract-response.ts';

/**
 * A retry with the same key and body gets the first response again, byte for byte, marked as a
 * replay, and the operation ran once.
 */
export const replaysResponse: ContractCheck = {
  id: 'replay',
  name: 'replays the first response byte for byte',
  async run(context) {
    const key = context.newKey();
    const { body } = context.newBody();
    const first = await context.send('sending the first request', { keys: [key], body });
    expectFreshSuccess(context, first, 'the first request');
    const retry = await context.send('retrying with the same key', { keys: [key], body });
    expectReplayOf(context, first, retry, 'the retry');
    const effects = await context.expectEffects(key, 1, 'a request and its retry');
    const header = context.options.replayedHeader;
    const marked = header === false ? '' : ` with ${header}: true`;
    return {
      status: 'passed',
      detail: `${describeResponse(first)}, then the same bytes${marked}${effects}`,
    };
  },
};
