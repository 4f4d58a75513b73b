import { setTimeout as delay } from 'node:timers/promises';
import { type CheckContext, type ContractCheck, ContractViolation } from '../check-context.ts';
import { expectReplayOf } from '../contract-expectations.ts';
import type { CrashControl } from '../contract-options.ts';
import {
  type ContractResponse,
  describeResponse,
  replayDifference,
  retryAfterMsOf,
} from '../contract-response.ts';

/** A key sent before the crash, and what the client saw of it then. */
interface KeyInFlight {
  key: string;
  body: unknown;
  /** The answer, when one arrived before the server died. */
  before?: ContractResponse;
}

/** Rounds tried before giving up on cutting off a request: a very fast server answers them all. */
const MAX_ROUNDS = 3;
/** Longest pause between retries after the restart, whatever `Retry-After` says. */
const MAX_RETRY_PAUSE_MS = 2_000;

/**
 * A stream of requests with fresh keys, the server killed with some of them in flight (some not
 * started, some mid-transaction, some committed and not yet answered), restarted, and every key
 * retried until it gets a final answer. Each key must then have succeeded once: the same bytes
 * before the crash (if an answer got out) and on every retry, and one business effect.
 */
export const executesOnceAcrossCrash: ContractCheck = {
  id: 'crash',
  name: 'executes each key once across a crash mid-request',
  async run(context) {
    const crash = context.options.crash;
    if (!crash) {
      return { status: 'skipped', detail: 'no crash option: the kit may not kill this server' };
    }
    const keys: KeyInFlight[] = [];
    let cutOff = 0;
    let rounds = 0;
    while (cutOff === 0 && rounds < MAX_ROUNDS) {
      rounds += 1;
      const round = await crashMidRequest(context, crash);
      keys.push(...round);
      cutOff += round.filter((entry) => !entry.before).length;
    }
    if (cutOff === 0) {
      throw new ContractViolation(
        `every request was answered before the kill took effect, ${MAX_ROUNDS} times: ` +
          'the crash was not tested; raise `concurrency`',
      );
    }
    await forEachLimited(keys, context.options.concurrency, async (entry) => {
      const final = await retryUntilFinal(context, entry);
      if (entry.before && context.isSuccess(entry.before)) {
        const difference = replayDifference(entry.before, final);
        if (difference) {
          throw new ContractViolation(
            `key ${entry.key} succeeded before the crash, but its retry after the restart had ` +
              `${difference}${executedAgainHint(context, final)}`,
          );
        }
      }
      context.step = `retrying key ${entry.key} once more`;
      const again = await context.client.send(
        { keys: [entry.key], body: entry.body },
        context.signal,
      );
      expectReplayOf(context, final, again, `a later retry of key ${entry.key}`);
    });
    let effects = '';
    for (const entry of keys) {
      effects = await context.expectEffects(entry.key, 1, `key ${entry.key}, across the crash,`);
    }
    return {
      status: 'passed',
      detail:
        `killed ${rounds === 1 ? 'once' : `${rounds} times`} with ${cutOff} of ${keys.length} ` +
        `requests unanswered; after the restart every key succeeded with the same bytes on each ` +
        `retry${effects ? '; one effect per key' : ''}`,
    };
  },
};

/**
 * Keeps `concurrency` requests with fresh keys in flight, kills the server once as many have been
 * answered (so it is busy, at every stage of a request), then restarts it. The kill comes half a
 * typical request's time after that: the requests sent as the last ones were answered are then in
 * the middle of their work, where a design that is not atomic leaves something behind.
 */
async function crashMidRequest(context: CheckContext, crash: CrashControl): Promise<KeyInFlight[]> {
  const keys: KeyInFlight[] = [];
  const { concurrency } = context.options;
  const latenciesMs: number[] = [];
  let killing = false;
  let killed: Promise<void> | undefined;
  context.step = 'sending requests until the server is killed';
  const killMidRequest = async () => {
    const sorted = [...latenciesMs].sort((a, b) => a - b);
    const medianMs = sorted[Math.floor(sorted.length / 2)] ?? 0;
    await delay(medianMs / 2, undefined, { signal: context.signal });
    context.step = 'killing the server';
    killed = crash.kill();
    await killed;
  };
  let killedMidRequest: Promise<void> | undefined;
  const worker = async () => {
    while (!killed) {
      const entry: KeyInFlight = { key: context.newKey(), body: context.newBody().body };
      keys.push(entry);
      const sentAtMs = performance.now();
      try {
        entry.before = await context.client.send(
          { keys: [entry.key], body: entry.body },
          context.signal,
        );
      } catch (error) {
        // After the kill, a request without an answer is what the check is about.
        if (killing && !context.signal.aborted) continue;
        throw new ContractViolation(`a request failed before the server was killed: ${error}`);
      }
      latenciesMs.push(performance.now() - sentAtMs);
      if (latenciesMs.length >= concurrency && !killing) {
        killing = true;
        killedMidRequest = killMidRequest();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await killedMidRequest;
  context.step = 'restarting the server';
  const baseUrl = await crash.restart();
  context.client.baseUrl = baseUrl.replace(/\/+$/, '');
  return keys;
}

/** Retries a key until it gets a final answer: a success, or anything but 409, 429 and 5xx. */
async function retryUntilFinal(
  context: CheckContext,
  entry: KeyInFlight,
): Promise<ContractResponse> {
  for (let attempt = 1; ; attempt += 1) {
    let response: ContractResponse | undefined;
    let last: string;
    try {
      response = await context.client.send({ keys: [entry.key], body: entry.body }, context.signal);
      last = describeResponse(response);
    } catch (error) {
      if (context.signal.aborted) throw error;
      last = `no answer (${error})`;
    }
    if (response && context.isSuccess(response)) return response;
    if (response && !isRetryable(response.status)) {
      throw new ContractViolation(
        `after the restart, key ${entry.key} got ${last} instead of ${context.successText}`,
      );
    }
    context.step = `retrying key ${entry.key} after the restart (attempt ${attempt}, last answer ${last})`;
    const pauseMs = (response && retryAfterMsOf(response)) ?? 50 * 2 ** Math.min(attempt, 5);
    await delay(Math.min(pauseMs, MAX_RETRY_PAUSE_MS), undefined, { signal: context.signal });
  }
}

/**
 * A retry that executed afresh (not marked as a replay) means the first execution did not last:
 * its response went out before its transaction committed.
 */
function executedAgainHint(context: CheckContext, final: ContractResponse): string {
  if (context.options.replayedHeader === false || context.isMarkedReplayed(final)) return '';
  return (
    ' and was not marked as a replay: the key executed again ' +
    '(was the first response sent before its transaction committed?)'
  );
}

function isRetryable(status: number): boolean {
  return status === 409 || status === 429 || status >= 500;
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
