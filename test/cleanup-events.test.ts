/**
 * The events cleanup publishes on node:diagnostics_channel: one per cleanupExpired run and per
 * scheduleCleanup tick, with the entries it deleted (counted against the table), its batches and
 * how it ended.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CLEANUP_CHANNEL,
  type CleanupEvent,
  cleanupExpired,
  LedgerSchemaError,
  scheduleCleanup,
} from '../src/index.ts';
import { deferred } from './support/barrier.ts';
import { newPool } from './support/database.ts';
import { uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();
const channel = tracingChannel<CleanupEvent, CleanupEvent>(CLEANUP_CHANNEL);

let ended: CleanupEvent[] = [];
let errors: CleanupEvent[] = [];
const subscribers = {
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd: (event: CleanupEvent) => ended.push(event),
  error: (event: CleanupEvent) => errors.push(event),
};
beforeEach(() => {
  ended = [];
  errors = [];
  channel.subscribe(subscribers);
});
afterEach(() => {
  channel.unsubscribe(subscribers);
});

/** Inserts `count` entries that expired an hour ago, and `live` that have not. */
async function insertEntries(prefix: string, count: number, live = 0) {
  await sql`
    insert into idempotency.ledger (scope, key, expires_at)
    select 'bulk', ${prefix} || '-' || g,
           statement_timestamp() + case when g <= ${count}::int then interval '-1 hour'
                                        else interval '1 hour' end
      from generate_series(1, ${count + live}::int) g`.execute(fx.db);
}

async function countEntries(prefix: string) {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from idempotency.ledger where key like ${`${prefix}%`}`.execute(
    fx.db,
  );
  return rows[0]?.n ?? 0;
}

describe('cleanup events', () => {
  it('tells what a cleanupExpired run deleted, in how many batches', async () => {
    const prefix = uniqueKey('expired');
    await insertEntries(prefix, 5, 2);
    const { deleted } = await cleanupExpired(fx.db, { batchSize: 2 });
    expect(deleted).toBe(5);
    expect(await countEntries(prefix)).toBe(2);
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({
      version: 1,
      trigger: 'call',
      schema: 'idempotency',
      batchSize: 2,
      outcome: 'completed',
      deleted: 5,
      // 2 + 2 + 1: the third batch was not full, so nothing expired was left.
      batches: 3,
    });
    expect(ended[0]?.durationMs).toBeGreaterThanOrEqual(0);
    expect(errors).toHaveLength(0);
  });

  it('tells a run its signal stopped', async () => {
    const prefix = uniqueKey('expired');
    await insertEntries(prefix, 3);
    const { deleted } = await cleanupExpired(fx.db, { signal: AbortSignal.abort() });
    expect(deleted).toBe(0);
    expect(await countEntries(prefix)).toBe(3);
    expect(ended[0]).toMatchObject({ outcome: 'aborted', deleted: 0, batches: 0 });
    await cleanupExpired(fx.db);
  });

  it('tells a failed run on the error channel', async () => {
    await expect(cleanupExpired(fx.db, { schema: 'no_such_schema' })).rejects.toBeInstanceOf(
      LedgerSchemaError,
    );
    expect(errors).toHaveLength(1);
    expect(ended[0]).toMatchObject({ outcome: 'failed', schema: 'no_such_schema', deleted: 0 });
  });

  it('tells scheduled ticks: skipped while another instance cleans, then completed', async () => {
    const prefix = uniqueKey('scheduled');
    await insertEntries(prefix, 4);
    const otherPool = newPool(fx.url, 1);
    const other = await otherPool.connect();
    await other.query(
      "select pg_advisory_lock(hashtext('idempotency-ledger:cleanup'), hashtext('idempotency'))",
    );
    const firstTick = deferred();
    const cleanedUp = deferred();
    const schedule = scheduleCleanup(fx.db, {
      intervalMs: 20,
      batchSize: 3,
      onTick: (tick) => {
        firstTick.resolve();
        if (tick.ran) cleanedUp.resolve();
      },
    });
    try {
      await firstTick.promise;
      expect(ended[0]).toMatchObject({ trigger: 'schedule', outcome: 'skipped', deleted: 0 });
      await other.query(
        "select pg_advisory_unlock(hashtext('idempotency-ledger:cleanup'), hashtext('idempotency'))",
      );
      await cleanedUp.promise;
    } finally {
      other.release();
      await otherPool.end();
      await schedule.stop();
    }
    const completed = ended.find((event) => event.outcome === 'completed' && event.deleted > 0);
    expect(completed).toMatchObject({ trigger: 'schedule', deleted: 4, batches: 2 });
    expect(await countEntries(prefix)).toBe(0);
  });
});
