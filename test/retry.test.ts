import type { Transaction } from 'kysely';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { withIdempotency } from '../src/index.ts';
import { deferred } from './support/barrier.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/**
 * Two calls that each count a scope's payments and then add one: a write skew that SERIALIZABLE
 * refuses. Both read before either writes (a barrier), so one of them must fail with 40001. A
 * third execution (the retry) first waits for `settled`, which the test resolves once the winner
 * has returned: reading before the winner's commit would be refused again.
 */
function writeSkew(scope: string) {
  const bothRead = { count: 0, done: deferred() };
  const settled = deferred();
  let executions = 0;
  const fn = (key: string) => async (trx: Transaction<Database>) => {
    executions += 1;
    if (executions > 2) await settled.promise;
    await sql`select count(*) from payments where scope = ${scope}`.execute(trx);
    bothRead.count += 1;
    if (bothRead.count === 2) bothRead.done.resolve();
    await bothRead.done.promise;
    return createPayment(scope, key)(trx);
  };
  return { fn, executions: () => executions, winnerReturned: () => settled.resolve() };
}

describe('retries of the library-owned transaction', () => {
  it('retries a serialization failure, and every call executes exactly once', async () => {
    const scope = uniqueKey('skew');
    const [keyA, keyB] = [uniqueKey(), uniqueKey()];
    const skew = writeSkew(scope);
    const options = { scope, isolationLevel: 'serializable' as const };
    const calls = [
      withIdempotency(fx.db, { ...options, key: keyA }, skew.fn(keyA)),
      withIdempotency(fx.db, { ...options, key: keyB }, skew.fn(keyB)),
    ] as const;
    // The loser cannot return before its retry has run, so the first to return is the winner.
    Promise.race(calls).then(skew.winnerReturned, skew.winnerReturned);
    const [a, b] = await Promise.all(calls);
    expect(a.replayed).toBe(false);
    expect(b.replayed).toBe(false);
    // fn ran a third time: the attempt that lost the conflict was rolled back and run again.
    expect(skew.executions()).toBe(3);
    expect(await fx.countPayments(keyA)).toBe(1);
    expect(await fx.countPayments(keyB)).toBe(1);
  });

  it('passes the serialization failure through once maxAttempts is spent', async () => {
    const scope = uniqueKey('skew');
    const [keyA, keyB] = [uniqueKey(), uniqueKey()];
    const skew = writeSkew(scope);
    const options = { scope, isolationLevel: 'serializable' as const, maxAttempts: 1 };
    const outcomes = await Promise.allSettled([
      withIdempotency(fx.db, { ...options, key: keyA }, skew.fn(keyA)),
      withIdempotency(fx.db, { ...options, key: keyB }, skew.fn(keyB)),
    ]);
    const failed = outcomes.filter((o) => o.status === 'rejected');
    expect(failed).toHaveLength(1);
    expect((failed[0] as PromiseRejectedResult).reason).toMatchObject({ code: '40001' });
    expect((await fx.countPayments(keyA)) + (await fx.countPayments(keyB))).toBe(1);
    expect((await fx.countEntries(keyA)) + (await fx.countEntries(keyB))).toBe(1);
  });

  it('retries a deadlock, and both calls execute exactly once', async () => {
    const [keyA, keyB] = [uniqueKey(), uniqueKey()];
    const ids = await fx.db
      .insertInto('payments')
      .values([
        { scope: 'rows', key: keyA, amount: 0 },
        { scope: 'rows', key: keyB, amount: 0 },
      ])
      .returning('id')
      .execute();
    const [first, second] = ids.map((row) => row.id);
    const bothLocked = { count: 0, done: deferred() };
    let executions = 0;
    // Each call locks one row, waits until the other has locked the other row, then wants it.
    const lockInOrder =
      (a: string | undefined, b: string | undefined) => async (trx: Transaction<Database>) => {
        executions += 1;
        await trx
          .updateTable('payments')
          .set({ amount: 1 })
          .where('id', '=', a as string)
          .execute();
        bothLocked.count += 1;
        if (bothLocked.count === 2) bothLocked.done.resolve();
        await bothLocked.done.promise;
        await trx
          .updateTable('payments')
          .set({ amount: 2 })
          .where('id', '=', b as string)
          .execute();
        return 'done';
      };
    const results = await Promise.all([
      withIdempotency(fx.db, { scope: 'deadlock', key: keyA }, lockInOrder(first, second)),
      withIdempotency(fx.db, { scope: 'deadlock', key: keyB }, lockInOrder(second, first)),
    ]);
    expect(results.map((r) => r.replayed)).toEqual([false, false]);
    expect(executions).toBe(3);
    expect(await fx.countEntries(keyA, 'deadlock')).toBe(1);
    expect(await fx.countEntries(keyB, 'deadlock')).toBe(1);
  });
});
