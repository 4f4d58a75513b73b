/**
 * onConcurrent: 'optimistic': no claim before fn, one INSERT of the finished entry last. The
 * guarantee users rely on is the same as with a claim: one committed effect per key, and every
 * call answered with that effect's response. What differs is who runs fn: a duplicate in flight
 * runs its own and rolls it back.
 */
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  migrate,
  UnstorableResponseError,
  withIdempotency,
} from '../src/index.ts';
import { deferred, waitForLockWaiters } from './support/barrier.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();
const optimistic = { scope: 's', onConcurrent: 'optimistic' } as const;

beforeAll(async () => {
  // A business table with its own unique key: a duplicate's fn fails on it once the winner has
  // committed, before it ever reaches the ledger.
  await sql`create table orders (key text primary key, amount int not null)`.execute(fx.db);
});

/** The row versions the ledger holds for `key`, live and dead, as Postgres counts them. */
async function ledgerRow(key: string) {
  const { rows } = await sql<{ response: string; xmax: string }>`
    select response::text as response, xmax::text as xmax from idempotency.ledger
     where scope = 's' and key = ${key}`.execute(fx.db);
  return rows;
}

/** Executes `key` once (a payment of 1), then ages its entry past its expiry. */
async function executedThenExpired(key: string) {
  await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 1));
  await sql`update idempotency.ledger set expires_at = now() - interval '1 second'
             where scope = 's' and key = ${key}`.execute(fx.db);
}

describe("onConcurrent: 'optimistic'", () => {
  it('executes once, writing the entry once, and replays it byte for byte', async () => {
    const key = uniqueKey();
    const first = await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key));
    expect(first.replayed).toBe(false);
    // One INSERT: the entry was never updated nor locked afterwards (xmax 0).
    const [row] = await ledgerRow(key);
    expect(row?.xmax).toBe('0');
    expect(row?.response).toBe(JSON.stringify(first.response));
    const replay = await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key));
    expect(replay).toEqual({ response: first.response, replayed: true });
    expect(JSON.stringify(replay.response)).toBe(row?.response);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('keeps one effect among 30 concurrent calls, and answers all of them with it', async () => {
    const key = uniqueKey();
    const release = deferred();
    let runs = 0;
    const fn = async (trx: Parameters<ReturnType<typeof createPayment>>[0]) => {
      runs += 1;
      const response = await createPayment('s', key, runs)(trx);
      await release.promise;
      return response;
    };
    const calls = Array.from({ length: 30 }, () =>
      withIdempotency(fx.db, { ...optimistic, key }, fn),
    );
    await expect.poll(() => runs).toBeGreaterThan(1);
    release.resolve();
    const results = await Promise.all(calls);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => JSON.stringify(r.response))).size).toBe(1);
    // Every fn that ran wrote a payment; the losers' rolled back with their transactions.
    expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it("replays when the duplicate's fn fails on its own unique key after the winner committed", async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const insertOrder = (amount: number) => async (trx: typeof fx.db) => {
      await sql`insert into orders (key, amount) values (${key}, ${amount})`.execute(trx);
      return { order: key, amount };
    };
    const first = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      const response = await insertOrder(1)(trx);
      inside.resolve();
      await release.promise;
      return response;
    });
    await inside.promise;
    // The duplicate's INSERT waits on the first call's uncommitted order, then violates its key.
    const duplicate = withIdempotency(fx.db, { ...optimistic, key }, insertOrder(2));
    await waitForLockWaiters(fx.db, 1);
    release.resolve();
    const [a, b] = await Promise.all([first, duplicate]);
    expect(a).toEqual({ response: { order: key, amount: 1 }, replayed: false });
    expect(b).toEqual({ response: a.response, replayed: true });
  });

  it('still throws what fn threw when no other call recorded the key', async () => {
    const key = uniqueKey();
    await sql`insert into orders (key, amount) values (${key}, 0)`.execute(fx.db);
    const call = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      await sql`insert into orders (key, amount) values (${key}, 1)`.execute(trx);
    });
    await expect(call).rejects.toMatchObject({ code: '23505' });
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses a winner recorded for another request with a 422, after rolling back', async () => {
    const key = uniqueKey();
    const release = deferred();
    const inside = deferred();
    const loser = withIdempotency(fx.db, { ...optimistic, key, request: { a: 1 } }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      inside.resolve();
      await release.promise;
      return response;
    });
    await inside.promise;
    await withIdempotency(
      fx.db,
      { ...optimistic, key, request: { a: 2 } },
      createPayment('s', key),
    );
    release.resolve();
    await expect(loser).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("waits for a claim-first call holding the key, then replays it and rolls back fn's writes", async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    const duplicate = withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 7));
    await waitForLockWaiters(fx.db, 1);
    release();
    const [a, b] = await Promise.all([first, duplicate]);
    expect(b).toEqual({ response: a.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('gives up after waitTimeoutMs with a 409, having committed nothing', async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    const call = withIdempotency(
      fx.db,
      { ...optimistic, key, waitTimeoutMs: 100 },
      createPayment('s', key, 7),
    );
    await expect(call).rejects.toMatchObject({ status: 409, reason: 'wait_timeout' });
    release();
    await first;
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('takes over an expired entry', async () => {
    const key = uniqueKey();
    await executedThenExpired(key);
    const again = await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 2));
    expect(again.replayed).toBe(false);
    expect(again.response.body.amount).toBe(2);
    const [row] = await ledgerRow(key);
    expect(row?.response).toBe(JSON.stringify(again.response));
    expect(await fx.countEntries(key)).toBe(1);
  });

  it('lets one of 10 concurrent calls take over an expired entry, and the others replay it', async () => {
    const key = uniqueKey();
    await executedThenExpired(key);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 10 + i)),
      ),
    );
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => JSON.stringify(r.response))).size).toBe(1);
    // The first payment, and one more for the key that was new again.
    expect(await fx.countPayments(key)).toBe(2);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it("keeps the caller's lock_timeout for what runs at COMMIT, whether or not fn wrote", async () => {
    // A deferred trigger on the ledger itself: it runs at COMMIT, after the record.
    await sql`
      create table seen_at_commit (key text, lock_timeout text);
      create function note_lock_timeout() returns trigger language plpgsql as $$
        begin
          insert into seen_at_commit values (new.key, current_setting('lock_timeout'));
          return null;
        end $$;
      create constraint trigger note_at_commit after insert on idempotency.ledger
        deferrable initially deferred for each row execute function note_lock_timeout();
    `.execute(fx.db);
    try {
      const { rows } = await sql<{ lock_timeout: string }>`show lock_timeout`.execute(fx.db);
      const wrote = uniqueKey();
      await withIdempotency(fx.db, { ...optimistic, key: wrote, waitTimeoutMs: 4321 }, (trx) =>
        createPayment('s', wrote)(trx),
      );
      const readOnly = uniqueKey();
      await withIdempotency(
        fx.db,
        { ...optimistic, key: readOnly, waitTimeoutMs: 4321 },
        async () => 'nothing written',
      );
      const seen = await sql<{ key: string; lock_timeout: string }>`
        select * from seen_at_commit order by key = ${readOnly}`.execute(fx.db);
      const callerValue = rows[0]?.lock_timeout;
      expect(seen.rows).toEqual([
        { key: wrote, lock_timeout: callerValue },
        { key: readOnly, lock_timeout: callerValue },
      ]);
    } finally {
      await sql`drop trigger note_at_commit on idempotency.ledger`.execute(fx.db);
    }
  });

  it("replays at repeatable read when the winner committed after the loser's snapshot", async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const loser = withIdempotency(
      fx.db,
      { ...optimistic, key, isolationLevel: 'repeatable read' },
      async (trx) => {
        const response = await createPayment('s', key, 1)(trx); // the snapshot is taken here
        inside.resolve();
        await release.promise;
        return response;
      },
    );
    await inside.promise;
    const winner = await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 2));
    release.resolve();
    expect(await loser).toEqual({ response: winner.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("is refused in the caller's transaction, before anything runs", async () => {
    const key = uniqueKey();
    let runs = 0;
    const call = fx.db.transaction().execute((trx) =>
      withIdempotency(trx, { ...optimistic, key }, async () => {
        runs += 1;
      }),
    );
    await expect(call).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(runs).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses a nested call for the same key on its transaction with a 409', async () => {
    const key = uniqueKey();
    let nested: unknown;
    const outer = await withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      nested = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key)).catch(
        (error: unknown) => error,
      );
      return createPayment('s', key)(trx);
    });
    expect(nested).toBeInstanceOf(IdempotencyConflictError);
    expect(nested).toMatchObject({ reason: 'same_transaction' });
    expect(outer.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('records the response of a fn that wrote nothing', async () => {
    const key = uniqueKey();
    const first = await withIdempotency(fx.db, { ...optimistic, key }, async () => ({ n: 1 }));
    const replay = await withIdempotency(fx.db, { ...optimistic, key }, async () => ({ n: 2 }));
    expect(first).toEqual({ response: { n: 1 }, replayed: false });
    expect(replay).toEqual({ response: { n: 1 }, replayed: true });
  });

  it('refuses at once a nested call for its key through another Kysely object', async () => {
    const key = uniqueKey();
    let runs = 0;
    const call = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      runs += 1;
      // withSchema() makes a new Transaction object: the nested call claims and records.
      const other = trx.withSchema('public');
      const nested = await withIdempotency(other, { scope: 's', key }, createPayment('s', key));
      return nested.response;
    });
    await expect(call).rejects.toMatchObject({ status: 409, reason: 'same_transaction' });
    expect(runs).toBe(1);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('fails with a LedgerSchemaError in a schema not migrated to 00003, committing nothing', async () => {
    await migrate({ connectionString: fx.url, schema: 'before_00003' });
    await sql`drop function before_00003.record_entry`.execute(fx.db);
    const key = uniqueKey();
    const call = withIdempotency(
      fx.db,
      { ...optimistic, key, schema: 'before_00003' },
      createPayment('s', key),
    );
    await expect(call).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(call).rejects.toMatchObject({ problem: 'missing' });
    expect(await fx.countPayments(key)).toBe(0);
  });

  it.each(['commit', 'rollback'])('reports a %s sent by fn and records nothing', async (end) => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      await sql.raw(end).execute(trx);
      return response;
    });
    await expect(call).rejects.toBeInstanceOf(UnstorableResponseError);
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    expect(await fx.countEntries(key)).toBe(0);
    expect(await fx.countPayments(key)).toBe(end === 'commit' ? 1 : 0);
  });

  it('reports a COMMIT sent by fn even when another call recorded the key meanwhile', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const call = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      const response = await createPayment('s', key, 1)(trx);
      inside.resolve();
      await release.promise;
      await sql`commit`.execute(trx);
      return response;
    });
    await inside.promise;
    await withIdempotency(fx.db, { ...optimistic, key }, createPayment('s', key, 2));
    release.resolve();
    // Not a replay of the other call: fn's COMMIT made a second payment durable.
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    expect(await fx.countPayments(key)).toBe(2);
  });

  it('reports an SQL error caught inside fn and commits nothing', async () => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { ...optimistic, key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      await sql`select 1/0`.execute(trx).catch(() => undefined);
      return response;
    });
    await expect(call).rejects.toMatchObject({ reason: 'transaction_aborted' });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });
});
