import { Kysely, PostgresDialect, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  type CleanupTick,
  cleanupExpired,
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  scheduleCleanup,
  withIdempotency,
} from '../src/index.ts';
import { deferred } from './support/barrier.ts';
import { newPool } from './support/database.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** Moves the expiry of matching entries into the past, as the database clock passing would. */
async function expire(keyPrefix: string) {
  await sql`
    update idempotency.ledger set expires_at = statement_timestamp() - interval '1 second'
     where key like ${`${keyPrefix}%`}`.execute(fx.db);
}

/** Inserts `count` entries under `prefix` that expired an hour ago, straight into the ledger. */
async function insertExpired(prefix: string, count: number) {
  await sql`
    insert into idempotency.ledger (scope, key, expires_at)
    select 'bulk', ${prefix} || '-' || g, statement_timestamp() - interval '1 hour'
      from generate_series(1, ${count}::int) g`.execute(fx.db);
}

/** Writes `count` entries under `prefix` through the public API. */
async function seed(prefix: string, count: number) {
  for (let i = 0; i < count; i++) {
    await withIdempotency(fx.db, { scope: 'seed', key: `${prefix}-${i}` }, async () => ({ i }));
  }
}

async function countEntries(prefix: string) {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from idempotency.ledger where key like ${`${prefix}%`}`.execute(
    fx.db,
  );
  return rows[0]?.n ?? 0;
}

describe('expiry', () => {
  it('executes an expired key again, by the database clock', async () => {
    const key = uniqueKey();
    const first = await withIdempotency(
      fx.db,
      { scope: 's', key, ttlMs: 60_000 },
      createPayment('s', key),
    );
    await expire(key);
    const second = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(second.replayed).toBe(false);
    expect(second.response).not.toEqual(first.response);
    expect(await fx.countPayments(key)).toBe(2);
    expect(await fx.countEntries(key)).toBe(1);
    // The renewed entry replays.
    expect(await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key))).toEqual({
      response: second.response,
      replayed: true,
    });
  });

  it('keeps a key for ttlMs after its response is stored, measured by the database', async () => {
    const key = uniqueKey();
    const clock = async () =>
      (await sql<{ now: Date }>`select clock_timestamp() as now`.execute(fx.db)).rows[0]?.now;
    const before = await clock();
    await withIdempotency(fx.db, { scope: 's', key, ttlMs: 90_000 }, async () => 1);
    const after = await clock();
    const { rows } = await sql<{ expires_at: Date }>`
      select expires_at from idempotency.ledger where key = ${key}`.execute(fx.db);
    const expiresAt = rows[0]?.expires_at.getTime() ?? 0;
    expect(expiresAt).toBeGreaterThanOrEqual((before?.getTime() ?? Infinity) + 90_000);
    expect(expiresAt).toBeLessThanOrEqual((after?.getTime() ?? 0) + 90_000);
  });
});

describe('cleanupExpired', () => {
  it('deletes exactly the expired entries; live ones still replay', async () => {
    const prefix = uniqueKey('cleanup');
    await seed(`${prefix}-old`, 12);
    await seed(`${prefix}-live`, 18);
    await expire(`${prefix}-old`);

    const { deleted } = await cleanupExpired(fx.db, { batchSize: 5 });

    expect(deleted).toBe(12);
    expect(await countEntries(`${prefix}-old`)).toBe(0);
    expect(await countEntries(`${prefix}-live`)).toBe(18);
    const replay = await withIdempotency(
      fx.db,
      { scope: 'seed', key: `${prefix}-live-7` },
      async () => 0,
    );
    expect(replay).toEqual({ response: { i: 7 }, replayed: true });
  });

  it('shares the work between concurrent runs without deleting anything twice', async () => {
    const prefix = uniqueKey('parallel');
    await insertExpired(prefix, 3000);
    const results = await Promise.all(
      Array.from({ length: 4 }, () => cleanupExpired(fx.db, { batchSize: 200 })),
    );
    expect(results.reduce((sum, r) => sum + r.deleted, 0)).toBe(3000);
    expect(await countEntries(prefix)).toBe(0);
  });

  it('pauses between full batches, and stops at once when its signal aborts', async () => {
    await cleanupExpired(fx.db); // nothing expired is left over from other tests
    const prefix = uniqueKey('paced');
    await insertExpired(prefix, 30);
    const stopping = new AbortController();
    // A pause longer than the test's timeout: only the abort can end this run in time.
    const run = cleanupExpired(fx.db, { batchSize: 10, pauseMs: 600_000, signal: stopping.signal });

    // Wait, by the database, until the first batch has committed: the run is now pausing.
    await expect
      .poll(() => countEntries(prefix), {
        timeout: 10_000,
        interval: 10,
        message: 'the cleanup run to commit its first batch of 10',
      })
      .toBeLessThanOrEqual(20);
    stopping.abort();

    expect(await run).toEqual({ deleted: 10 });
    expect(await countEntries(prefix)).toBe(20);
    // A signal that has already aborted deletes nothing.
    expect(await cleanupExpired(fx.db, { signal: stopping.signal })).toEqual({ deleted: 0 });
    expect(await cleanupExpired(fx.db, { batchSize: 10, pauseMs: 1 })).toEqual({ deleted: 20 });
  });

  it('reports the count so far after each batch to onBatch', async () => {
    await cleanupExpired(fx.db);
    await insertExpired(uniqueKey('batches'), 5);
    const reported: number[] = [];
    const { deleted } = await cleanupExpired(fx.db, {
      batchSize: 2,
      onBatch: (sofar) => reported.push(sofar),
    });
    expect(deleted).toBe(5);
    expect(reported).toEqual([2, 4, 5]);
    // A schedule reports its ticks through onTick.
    expect(() => scheduleCleanup(fx.db, { onBatch: () => {} } as never)).toThrow(
      InvalidIdempotencyOptionsError,
    );
  });

  it('refuses a negative or fractional pause', async () => {
    for (const pauseMs of [-1, 1.5]) {
      await expect(cleanupExpired(fx.db, { pauseMs })).rejects.toBeInstanceOf(
        InvalidIdempotencyOptionsError,
      );
    }
  });

  it('neither blocks nor is blocked by a live call taking over an expired key', async () => {
    const key = uniqueKey('takeover');
    await withIdempotency(fx.db, { scope: 's', key }, async () => 'old');
    await expire(key);
    const inside = deferred();
    const release = deferred();
    const takeover = withIdempotency(fx.db, { scope: 's', key }, async () => {
      inside.resolve();
      await release.promise;
      return 'new';
    });
    await inside.promise;

    // The expired row is locked by the takeover: cleanup skips it instead of waiting.
    const { deleted } = await cleanupExpired(fx.db);
    expect(deleted).toBe(0);
    release.resolve();
    expect(await takeover).toEqual({ response: 'new', replayed: false });
    expect(await countEntries(key)).toBe(1);
  });
});

describe('scheduleCleanup', () => {
  it('skips ticks while another instance holds the cleanup lock, then cleans up', async () => {
    const prefix = uniqueKey('scheduled');
    await seed(prefix, 5);
    await expire(prefix);

    // Another instance, on its own connection, is in the middle of a tick.
    const otherPool = newPool(fx.url, 1);
    const other = await otherPool.connect();
    await other.query(
      "select pg_advisory_lock(hashtext('idempotency-ledger:cleanup'), hashtext('idempotency'))",
    );
    const ticks: CleanupTick[] = [];
    const firstTick = deferred();
    const cleanedUp = deferred();
    const schedule = scheduleCleanup(fx.db, {
      intervalMs: 20,
      onTick: (tick) => {
        ticks.push(tick);
        firstTick.resolve();
        if (tick.ran) cleanedUp.resolve();
      },
    });
    await firstTick.promise;
    expect(ticks[0]).toEqual({ ran: false, deleted: 0 });
    expect(await countEntries(prefix)).toBe(5);

    await other.query(
      "select pg_advisory_unlock(hashtext('idempotency-ledger:cleanup'), hashtext('idempotency'))",
    );
    other.release();
    await otherPool.end();
    await cleanedUp.promise;
    await schedule.stop();

    expect(ticks.find((tick) => tick.ran)?.deleted).toBeGreaterThanOrEqual(5);
    expect(await countEntries(prefix)).toBe(0);
  });

  it('reports tick errors to onError and keeps the process alive', async () => {
    const errors: unknown[] = [];
    const twoErrors = deferred();
    const schedule = scheduleCleanup(fx.db, {
      intervalMs: 10,
      schema: 'no_such_schema',
      onError: (error) => {
        errors.push(error);
        if (errors.length === 2) twoErrors.resolve();
      },
    });
    await twoErrors.promise;
    await schedule.stop();
    expect(errors[0]).toBeInstanceOf(LedgerSchemaError);
  });

  it('routes a rejecting async onTick to onError instead of an unhandled rejection', async () => {
    const failure = new Error('metrics backend down');
    const reported = deferred<unknown>();
    const schedule = scheduleCleanup(fx.db, {
      intervalMs: 60_000,
      onTick: async () => {
        throw failure;
      },
      onError: async (error) => {
        reported.resolve(error);
        throw new Error('and the logger is down too');
      },
    });
    expect(await reported.promise).toBe(failure);
    await schedule.stop();
  });

  it('stop() ends the tick in progress after its running batch, and waits for that batch', async () => {
    await cleanupExpired(fx.db); // nothing expired is left over from other tests
    const prefix = uniqueKey('stopping');
    await insertExpired(prefix, 2000);
    const pool = newPool(fx.url, 2);
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    try {
      const ticks: CleanupTick[] = [];
      const schedule = scheduleCleanup(db, {
        intervalMs: 60_000,
        batchSize: 10,
        onTick: (tick) => {
          ticks.push(tick);
        },
      });
      // Until a batch has committed, by the database.
      await expect
        .poll(() => countEntries(prefix), {
          timeout: 10_000,
          interval: 10,
          message: "the schedule's first tick to commit a batch",
        })
        .not.toBe(2000);
      await schedule.stop();

      // The tick ended early, and no batch is still running on the schedule's connection.
      expect(ticks).toHaveLength(1);
      const left = await countEntries(prefix);
      expect(left).toBeGreaterThan(0);
      expect(ticks[0]).toEqual({ ran: true, deleted: 2000 - left });
      expect(pool.totalCount - pool.idleCount).toBe(0);
    } finally {
      await db.destroy();
    }
  });

  it('stop() before the first tick has begun deletes nothing and reports no tick', async () => {
    const prefix = uniqueKey('stopped-early');
    await insertExpired(prefix, 50);
    const ticks: CleanupTick[] = [];
    const schedule = scheduleCleanup(fx.db, {
      intervalMs: 60_000,
      onTick: (tick) => {
        ticks.push(tick);
      },
    });
    await schedule.stop();
    expect(ticks).toEqual([]);
    expect(await countEntries(prefix)).toBe(50);
    await cleanupExpired(fx.db);
  });
});
