/**
 * A retry that finds the operation's row locked - an attempt between a fenced write and its
 * COMMIT, paused or cut off there - waits no longer than it was told: `'reject'` answers at once
 * and `'wait'` within `waitTimeoutMs`, with a 409, while the lock is still held. (A finished
 * operation replays without waiting for its row: it is read without a lock.)
 */
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { IdempotencyConflictError } from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  OperationPendingError,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m3:acquire-wait';
/** Longest the test holds the row: a bound for the test, not a timing under test. */
const HOLD_LIMIT_MS = 10_000;

const failedOnce = new Set<string>();
/** Its call fails the first time for each key: the operation stays in progress, lease released. */
const operation = defineOperation({
  name: 'acquire-wait',
  async run(op: OperationContext<Database>, request: { amount: number }) {
    await op.call('notify', async () => {
      if (failedOnce.has(op.key)) return { sent: true };
      failedOnce.add(op.key);
      throw new Error('the downstream service is down');
    });
    return op.finish(async () => ({ amount: request.amount }));
  },
});
const run = (key: string, options: { onConcurrent: 'wait' | 'reject'; waitTimeoutMs?: number }) =>
  runOperation(fx.db, operation, { scope: SCOPE, key, request: { amount: 1 }, ...options });
/** An operation in progress that no attempt holds: any retry may take it, unless its row is locked. */
async function abandoned(key: string) {
  await expect(run(key, { onConcurrent: 'wait' })).rejects.toBeInstanceOf(OperationPendingError);
}

/** Runs `attempt` while another transaction holds the operation row's lock; returns how it ended. */
async function whileRowLocked(key: string, attempt: () => Promise<unknown>) {
  const locked = deferred<void>();
  const attemptEnded = deferred<void>();
  let released = false;
  const holder = fx.db.transaction().execute(async (trx) => {
    await sql`select 1 from idempotency.operations where scope = ${SCOPE} and key = ${key}
               for update`.execute(trx);
    locked.resolve();
    // Held until the attempt ended, or HOLD_LIMIT_MS so that a failing test does not hang (the
    // attempt then ends only once the lock is gone).
    await Promise.race([attemptEnded.promise, new Promise((r) => setTimeout(r, HOLD_LIMIT_MS))]);
    released = true;
  });
  await locked.promise;
  const outcome = await attempt().then(
    (value) => ({ value, error: undefined, lockStillHeld: !released }),
    (error: unknown) => ({ value: undefined, error, lockStillHeld: !released }),
  );
  attemptEnded.resolve();
  await holder;
  return outcome;
}

it("answers 'reject' with a 409 at once while the operation's row is locked", async () => {
  const key = uniqueKey();
  await abandoned(key);
  const outcome = await whileRowLocked(key, () => run(key, { onConcurrent: 'reject' }));
  expect(outcome.lockStillHeld).toBe(true);
  expect(outcome.error).toBeInstanceOf(IdempotencyConflictError);
  expect((outcome.error as IdempotencyConflictError).reason).toBe('in_flight');
});

it("answers 'wait' with a 409 once waitTimeoutMs is spent while the row stays locked", async () => {
  const key = uniqueKey();
  await abandoned(key);
  const outcome = await whileRowLocked(key, () =>
    run(key, { onConcurrent: 'wait', waitTimeoutMs: 200 }),
  );
  expect(outcome.lockStillHeld).toBe(true);
  expect(outcome.error).toBeInstanceOf(IdempotencyConflictError);
  expect((outcome.error as IdempotencyConflictError).reason).toBe('wait_timeout');
  // Once the lock is gone a retry resumes it, and the next one replays it.
  expect(await run(key, { onConcurrent: 'reject' })).toMatchObject({ resumed: true });
  expect(await run(key, { onConcurrent: 'reject' })).toMatchObject({ replayed: true });
});

it('replays a finished operation without waiting for its row: it is read without a lock', async () => {
  const key = uniqueKey();
  await abandoned(key);
  const { response } = await run(key, { onConcurrent: 'wait' });
  const outcome = await whileRowLocked(key, () => run(key, { onConcurrent: 'reject' }));
  expect(outcome.lockStillHeld).toBe(true);
  expect(outcome.error).toBeUndefined();
  expect(outcome.value).toEqual({ response, replayed: true, resumed: false });
});
