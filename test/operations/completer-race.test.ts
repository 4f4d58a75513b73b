/**
 * Completers racing each other and clients: each abandoned operation runs to its end once, the
 * pass that did not run it says so, and an operation of a name no completer knows is left alone.
 */
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import {
  defineOperation,
  type OperationContext,
  OperationPendingError,
  resumeAbandonedOperations,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m8:completer';

/** Keys whose next call fails (leaving the operation pending), and gates their resumed call waits on. */
const failNext = new Set<string>();
const gates = new Map<string, { inside: () => void; open: Promise<void> }>();
const finishes = new Map<string, number>();

const operation = defineOperation({
  name: 'completer-race',
  async run(op: OperationContext<Database>) {
    await op.step('pay', async (trx) => {
      await trx.insertInto('payments').values({ scope: SCOPE, key: op.key, amount: 1 }).execute();
    });
    await op.call('work', async () => {
      if (failNext.delete(op.key)) throw new Error('connection reset');
      const gate = gates.get(op.key);
      if (gate) {
        gate.inside();
        await gate.open;
      }
    });
    return op.finish(async () => {
      finishes.set(op.key, (finishes.get(op.key) ?? 0) + 1);
      return 'done';
    });
  },
});
const abandon = async (key: string, name = operation) => {
  failNext.add(key);
  await expect(
    runOperation(fx.db, name, { scope: SCOPE, key, request: { key } }),
  ).rejects.toBeInstanceOf(OperationPendingError);
};

it('counts an operation a client finished during the pass as skipped, not finished', async () => {
  const [first, second] = [uniqueKey(), uniqueKey()];
  await abandon(first);
  await abandon(second);
  const inside = deferred();
  const open = deferred();
  gates.set(first, { inside: inside.resolve, open: open.promise });
  try {
    // The pass found both, and is inside the first when the second's client retries.
    const pass = resumeAbandonedOperations(fx.db, { operations: [operation] });
    await inside.promise;
    const client = await runOperation(fx.db, operation, {
      scope: SCOPE,
      key: second,
      request: { key: second },
    });
    expect(client).toMatchObject({ resumed: true, replayed: false });
    open.resolve();
    expect(await pass).toEqual({ found: 2, finished: 1, pending: 0, skipped: 1, failed: 0 });
    expect([finishes.get(first), finishes.get(second)]).toEqual([1, 1]);
  } finally {
    gates.delete(first);
  }
});

it('runs each abandoned operation once with two completers at once, and leaves an unknown name alone', async () => {
  const keys = Array.from({ length: 6 }, () => uniqueKey('race'));
  for (const key of keys) await abandon(key);
  const stranger = defineOperation({
    name: 'not-registered-here',
    run: operation.run,
  });
  const orphan = uniqueKey('orphan');
  await abandon(orphan, stranger);

  const passes = await Promise.all([
    resumeAbandonedOperations(fx.db, { operations: [operation] }),
    resumeAbandonedOperations(fx.db, { operations: [operation] }),
  ]);
  expect(passes.reduce((sum, pass) => sum + pass.finished, 0)).toBe(keys.length);
  expect(passes.reduce((sum, pass) => sum + pass.failed + pass.pending, 0)).toBe(0);
  for (const key of keys) {
    expect(finishes.get(key)).toBe(1);
    expect(await fx.countPayments(key)).toBe(1);
  }
  const { rows } = await sql<{ state: string; attempts: number }>`
    select state, attempts from idempotency.operations
     where scope = ${SCOPE} and key = ${orphan}`.execute(fx.db);
  expect(rows[0]).toEqual({ state: 'in_progress', attempts: 1 });
  expect(finishes.get(orphan)).toBeUndefined();
});

it('finishes a resumed operation with the ttl its client asked for at its start', async () => {
  const key = uniqueKey();
  const weekMs = 7 * 24 * 60 * 60 * 1000;
  failNext.add(key);
  await expect(
    runOperation(fx.db, operation, { scope: SCOPE, key, request: { key }, ttlMs: weekMs }),
  ).rejects.toBeInstanceOf(OperationPendingError);
  // The completer is not told: the ttl is stored with the operation.
  const pass = await resumeAbandonedOperations(fx.db, { operations: [operation] });
  expect(pass).toMatchObject({ finished: 1 });
  const { rows } = await sql<{ ttl_ms: number }>`
    select extract(epoch from expires_at - updated_at)::float8 * 1000 as ttl_ms
      from idempotency.operations where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  expect(rows[0]?.ttl_ms).toBeGreaterThan(weekMs - 60_000);
  expect(rows[0]?.ttl_ms).toBeLessThan(weekMs + 1_000);
});
