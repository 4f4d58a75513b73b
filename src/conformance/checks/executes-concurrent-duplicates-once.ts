import { type CheckContext, type ContractCheck, ContractViolation } from '../check-context.ts';
import { expectReplayOf } from '../contract-expectations.ts';
import {
  type ContractResponse,
  describeResponse,
  problemDifference,
  replayDifference,
  retryAfterMsOf,
} from '../contract-response.ts';

/**
 * Rounds of duplicates, each with its own key. A race between duplicates shows only when they
 * really overlap on the server, and the first round often meets a cold server (its database pool
 * still opening connections, which spreads the duplicates out): a look-up-then-insert server
 * slipped through a single round about half the time, and through none of five in our runs.
 */
const ROUNDS = 5;

/** What one round of duplicates got. */
interface RoundTally {
  succeeded: number;
  replayed: number;
  refused: number;
}

/**
 * Duplicates that arrive together execute once: each gets the one successful response, byte for
 * byte, or a 409 problem with `Retry-After` (a server may let duplicates wait, or turn them away).
 */
export const executesConcurrentDuplicatesOnce: ContractCheck = {
  id: 'concurrent-duplicates',
  name: 'executes concurrent duplicates once (the same success, or 409 with Retry-After)',
  async run(context) {
    const total: RoundTally = { succeeded: 0, replayed: 0, refused: 0 };
    let effects = '';
    for (let round = 1; round <= ROUNDS; round += 1) {
      const key = context.newKey();
      const tally = await sendDuplicates(context, key, `round ${round} of ${ROUNDS}`);
      total.succeeded += tally.succeeded;
      total.replayed += tally.replayed;
      total.refused += tally.refused;
      effects = await context.expectEffects(
        key,
        1,
        `${context.options.concurrency} concurrent duplicates (round ${round})`,
      );
    }
    const replayed =
      context.options.replayedHeader === false
        ? ''
        : ` (${total.replayed} of them marked as replays)`;
    return {
      status: 'passed',
      detail:
        `${ROUNDS} rounds of ${context.options.concurrency} duplicates at once: ` +
        `${total.succeeded} got their round's one success${replayed}, ${total.refused} got 409 ` +
        `with Retry-After${effects && '; one effect per round'}`,
    };
  },
};

async function sendDuplicates(
  context: CheckContext,
  key: string,
  round: string,
): Promise<RoundTally> {
  const { body } = context.newBody();
  const count = context.options.concurrency;
  context.step = `sending ${count} duplicates at once (${round})`;
  const settled = await context.client.sendTogether(
    Array.from({ length: count }, () => ({ keys: [key], body })),
    context.signal,
  );
  const answers: ContractResponse[] = [];
  for (const [i, result] of settled.entries()) {
    if (result.status === 'rejected') {
      throw new ContractViolation(
        `duplicate ${i + 1} of ${count} got no answer (${round}): ${result.reason}`,
      );
    }
    answers.push(result.value);
  }

  const successes = answers.filter((answer) => context.isSuccess(answer));
  const conflicts = answers.filter((answer) => !context.isSuccess(answer));
  for (const conflict of conflicts) expectInProgressProblem(conflict, round);
  const [first] = successes;
  if (!first) {
    throw new ContractViolation(`none of ${count} duplicates succeeded (${round}); all got 409`);
  }
  for (const success of successes) {
    const difference = replayDifference(first, success);
    if (difference) {
      throw new ContractViolation(
        `two duplicates succeeded with different responses (${round}): one had ${difference}`,
      );
    }
  }
  const fresh = successes.filter((success) => !context.isMarkedReplayed(success));
  if (context.options.replayedHeader !== false && fresh.length !== 1) {
    throw new ContractViolation(
      `${fresh.length} of ${successes.length} successful duplicates lacked ` +
        `${context.options.replayedHeader}: true (${round}); exactly one executed`,
    );
  }
  // A client turned away with 409 retries: by now it must get the same success.
  const retry = await context.send(`retrying after the duplicates (${round})`, {
    keys: [key],
    body,
  });
  expectReplayOf(context, first, retry, `a retry after the duplicates (${round})`);
  return {
    succeeded: successes.length,
    replayed: successes.length - fresh.length,
    refused: conflicts.length,
  };
}

function expectInProgressProblem(conflict: ContractResponse, round: string): void {
  const difference = problemDifference(conflict, 409);
  if (difference) {
    throw new ContractViolation(
      `expected each duplicate to succeed or get a 409 application/problem+json (${round}), ` +
        `got ${difference}: ${describeResponse(conflict)}`,
    );
  }
  if (retryAfterMsOf(conflict) === undefined) {
    throw new ContractViolation(
      `a 409 for a duplicate in progress had no readable Retry-After header (${round}): ` +
        describeResponse(conflict),
    );
  }
}
