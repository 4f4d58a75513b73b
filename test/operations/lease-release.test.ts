/**
 * A failed attempt gives its lease up for good: no renewal of its heartbeat lands after the
 * release, so a retry resumes the operation at once rather than waiting the lease out.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import {
  defineOperation,
  type OperationContext,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred, waitForLockWaiters } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m6:release';
const LEASE_MS = 3_000;

/** Waits until `count` sessions wait on a lock, or `budgetMs` passed: no later renewal can come. */
async function lockWaitersReach(count: number, budgetMs: number): Promise<void> {
  const deadline = performance.now() + budgetMs;
  while (performance.now() < deadline) {
    const { rows } = await sql<{ waiting: number }>`
      select count(*)::int as waiting from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'`.execute(fx.db);
    if ((rows[0]?.waiting ?? 0) >= count) return;
    await sleep(20);
  }
}

it('releases the lease of a failed attempt after its last renewal, not before it', async () => {
  const key = uniqueKey();
  const failure = new Error('step failed');
  const locked = deferred();
  const unlock = deferred();
  let locker: Promise<void> | undefined;
  let failing = true;
  const operation = defineOperation({
    name: 'slow-release',
    async run(op: OperationContext<Database>) {
      try {
        await op.step('first', async () => {
          if (failing) throw failure;
          return 'first';
        });
      } catch (error) {
        if (!failing) throw error;
        // Something else holds the operation's row (another client's acquire, say) while the
        // attempt ends: its release waits, and a renewal may be sent meanwhile.
        locker = fx.db.transaction().execute(async (trx) => {
          await sql`select 1 from idempotency.operations
                     where scope = ${SCOPE} and key = ${op.key} for update`.execute(trx);
          locked.resolve();
          await unlock.promise;
        });
        await locked.promise;
        throw error;
      }
      return op.finish(async () => 'done');
    },
  });
  const attempt = runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request: null,
    leaseMs: LEASE_MS,
  }).catch((error: unknown) => error);
  await locked.promise;
  // The release waits on the row; give the heartbeat (every second) time to send a renewal too.
  await waitForLockWaiters(fx.db, 1);
  await lockWaitersReach(2, LEASE_MS);
  unlock.resolve();
  await locker;
  expect(await attempt).toBe(failure);

  const { rows } = await sql<{ lease_expires_at: Date | null }>`
    select lease_expires_at from idempotency.operations
     where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  expect(rows[0]?.lease_expires_at).toBeNull();
  // So a retry that will not wait resumes it at once.
  failing = false;
  expect(
    await runOperation(fx.db, operation, {
      scope: SCOPE,
      key,
      request: null,
      onConcurrent: 'reject',
    }),
  ).toMatchObject({ resumed: true, response: 'done' });
});
