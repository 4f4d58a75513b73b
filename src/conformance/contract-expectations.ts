import { type CheckContext, ContractViolation } from './check-context.ts';
import { type ContractResponse, describeResponse, replayDifference } from './contract-response.ts';

/** Fails unless `response` is the endpoint's success. */
export function expectSuccess(
  context: CheckContext,
  response: ContractResponse,
  what: string,
): void {
  if (!context.isSuccess(response)) {
    throw new ContractViolation(
      `expected ${what} to succeed with ${context.successText}, got ${describeResponse(response)}`,
    );
  }
}

/** Fails unless `response` is a success not marked as a replay: the key was new. */
export function expectFreshSuccess(
  context: CheckContext,
  response: ContractResponse,
  what: string,
): void {
  expectSuccess(context, response, what);
  if (context.isMarkedReplayed(response)) {
    throw new ContractViolation(
      `${what} used a new key, yet it was marked ${String(context.options.replayedHeader)}: true`,
    );
  }
}

/**
 * Fails unless `replay` repeats `original` (status, `Content-Type`, `Location`, body bytes) and
 * carries the replay header, when the API has one.
 */
export function expectReplayOf(
  context: CheckContext,
  original: ContractResponse,
  replay: ContractResponse,
  what: string,
): void {
  const difference = replayDifference(original, replay);
  if (difference) {
    throw new ContractViolation(`${what} was not the first response again: it had ${difference}`);
  }
  const header = context.options.replayedHeader;
  if (header !== false && !context.isMarkedReplayed(replay)) {
    throw new ContractViolation(`${what} repeated the first response but lacked ${header}: true`);
  }
}
