import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { IdempotencyConflictError, withIdempotency } from '../src/index.ts';
import { deferred, waitForLockWaiters } from './support/barrier.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

describe('concurrent duplicates', () => {
  it("with 'wait', 50 concurrent calls execute once and all return the same response", async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    let executions = 0;
    const fn = async (trx: Parameters<ReturnType<typeof createPayment>>[0]) => {
      executions += 1;
      const response = await createPayment('s', key)(trx);
      inside.resolve();
      await release.promise;
      return response;
    };

    const first = withIdempotency(fx.db, { scope: 's', key }, fn);
    await inside.promise;
    const duplicates = Array.from({ length: 49 }, () =>
      withIdempotency(fx.db, { scope: 's', key }, fn),
    );
    await waitForLockWaiters(fx.db, 49);
    release.resolve();

    const results = await Promise.all([first, ...duplicates]);
    expect(executions).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    const responses = new Set(results.map((r) => JSON.stringify(r.response)));
    expect(responses.size).toBe(1);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("with 'reject', duplicates in flight fail at once with a 409 conflict", async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);

    let duplicateRuns = 0;
    const duplicates = await Promise.allSettled(
      Array.from({ length: 20 }, () =>
        withIdempotency(fx.db, { scope: 's', key, onConcurrent: 'reject' }, async () => {
          duplicateRuns += 1;
        }),
      ),
    );
    release();
    const firstResult = await first;

    expect(duplicateRuns).toBe(0);
    for (const outcome of duplicates) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(IdempotencyConflictError);
      expect(reason).toMatchObject({ status: 409, code: 'conflict', reason: 'in_flight' });
    }
    expect(firstResult.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
    // Once the first call committed, the same key replays instead of conflicting.
    const later = await withIdempotency(
      fx.db,
      { scope: 's', key, onConcurrent: 'reject' },
      async () => 0,
    );
    expect(later).toEqual({ response: firstResult.response, replayed: true });
  });

  it('claims a free key even when the wait budget is spent before the claim could try', async () => {
    // As if the backend had been descheduled for longer than the whole wait between entering
    // claim_key and its INSERT (it happens on a busy machine with 'reject's 1 ms): a budget of
    // 0 ms. Nothing holds the key, so nothing waits, and the claim must succeed, not conflict.
    const free = uniqueKey();
    const held = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', held);
    const claim = async (key: string) => {
      const trx = await fx.db.startTransaction().execute();
      try {
        const { rows } = await sql<{ claimed: boolean }>`
          select claimed from idempotency.claim_key('s', ${key}, null, 60000, 0)`.execute(trx);
        return rows[0]?.claimed;
      } finally {
        await trx.rollback().execute();
      }
    };
    try {
      expect(await claim(free)).toBe(true);
      // A key that is held still conflicts at once.
      await expect(claim(held)).rejects.toMatchObject({ code: '55P03' });
    } finally {
      release();
    }
    expect((await first).replayed).toBe(false);
  });

  it('gives up waiting after waitTimeoutMs with a conflict, leaving the first call intact', async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);

    const waiter = withIdempotency(fx.db, { scope: 's', key, waitTimeoutMs: 100 }, async () => 0);
    await expect(waiter).rejects.toMatchObject({ code: 'conflict', reason: 'wait_timeout' });
    release();
    expect((await first).replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('executes a waiting duplicate when the first call rolls back', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      await createPayment('s', key, 1)(trx);
      inside.resolve();
      await release.promise;
      throw new Error('first attempt failed');
    });
    await inside.promise;
    const second = withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key, 2));
    await waitForLockWaiters(fx.db, 1);
    release.resolve();

    await expect(first).rejects.toThrow('first attempt failed');
    const result = await second;
    expect(result.replayed).toBe(false);
    expect(result.response.body.amount).toBe(2);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('starts the time to live when the response is stored, so a slow fn still replays', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const first = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      // As if fn had run longer than ttlMs: the expiry set by the claim is already past.
      await sql`
        update idempotency.ledger set expires_at = clock_timestamp() - interval '1 second'
         where scope = 's' and key = ${key}`.execute(trx);
      inside.resolve();
      await release.promise;
      return response;
    });
    await inside.promise;
    const duplicate = withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    await waitForLockWaiters(fx.db, 1);
    release.resolve();

    const [a, b] = await Promise.all([first, duplicate]);
    expect(a.replayed).toBe(false);
    expect(b).toEqual({ response: a.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("does not apply waitTimeoutMs to fn's own statements", async () => {
    const key = uniqueKey();
    const { rows } = await sql<{ lock_timeout: string }>`show lock_timeout`.execute(fx.db);
    const sessionDefault = rows[0]?.lock_timeout;
    const result = await withIdempotency(
      fx.db,
      { scope: 's', key, waitTimeoutMs: 1234 },
      async (trx) => {
        const inside = await sql<{ lock_timeout: string }>`show lock_timeout`.execute(trx);
        return inside.rows[0]?.lock_timeout;
      },
    );
    expect(result.response).toBe(sessionDefault);
  });
});
