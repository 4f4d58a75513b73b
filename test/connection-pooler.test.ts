/**
 * Everything through PgBouncer in transaction mode: each transaction, and each statement outside
 * one, may run on another server connection, and whatever a statement leaves on its connection
 * (a session setting, a session lock) stays there for the next client. The library must keep no
 * such state: these tests check the pooled server connections after it ran.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CleanupTick,
  IdempotencyConflictError,
  migrate,
  readMigrations,
  scheduleCleanup,
  withIdempotency,
} from '../src/index.ts';
import { amqpPublisher } from '../src/outbox/amqplib/index.ts';
import { createOutboxRelay } from '../src/outbox/index.ts';
import { deferred } from './support/barrier.ts';
import { openAmqp } from './support/brokers.ts';
import { newPool } from './support/database.ts';
import { expectAcquireOperationWorks } from './support/expect-acquire-operation.ts';
import { type Database, useLedgerFixture } from './support/ledger-fixture.ts';
import {
  expectNoOverlap,
  expectStreamsInOrder,
  type PublishInterval,
  produce,
  recordedQueue,
  timed,
} from './support/outbox-fixture.ts';
import { findPgBouncer, type PgBouncer, startPgBouncer } from './support/pgbouncer.ts';

/** Server connections the pooler keeps per database: few, so that clients share them. */
const POOL_SIZE = 3;
const binary = findPgBouncer();
/** What a first migrate() applies: every file this version ships, in order. */
const MIGRATION_NAMES = readMigrations().map(({ name }) => name);

describe.skipIf(!binary)('through PgBouncer in transaction mode', () => {
  let pooler: PgBouncer;
  const fx = useLedgerFixture();
  const pools: pg.Pool[] = [];
  beforeAll(async () => {
    pooler = await startPgBouncer(binary as string, { poolSize: POOL_SIZE });
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    await pooler?.stop();
  });

  /** A Kysely instance of the application's kind, connected through the pooler. */
  function pooledDb(url: string, max = 10): Kysely<Database> {
    const pool = newPool(pooler.url(url), max);
    pools.push(pool);
    return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }

  /**
   * Runs `query` once on each of the pooler's server connections for `url`: POOL_SIZE clients
   * each open a transaction and hold it until all have answered, so each holds its own one.
   */
  async function onEachServerConnection<R extends pg.QueryResultRow>(url: string, query: string) {
    const pool = newPool(pooler.url(url), POOL_SIZE);
    const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
    try {
      const rows: (R & { pid: number })[] = [];
      for (const client of clients) {
        await client.query('begin');
        const {
          rows: [row],
        } = await client.query<R & { pid: number }>(
          `select pg_backend_pid() as pid, * from (${query}) q`,
        );
        if (row) rows.push(row);
      }
      for (const client of clients) await client.query('commit');
      expect(new Set(rows.map((row) => row.pid)).size).toBe(POOL_SIZE);
      return rows;
    } finally {
      // Closed rather than returned: one may still be in a failed transaction.
      for (const client of clients) client.release(true);
      await pool.end();
    }
  }

  /** Advisory locks held in the database, by any session: none once every call has ended. */
  async function advisoryLocks<DB>(db: Kysely<DB>): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_locks
       where locktype = 'advisory'
         and database = (select oid from pg_database where datname = current_database())`.execute(
      db,
    );
    return rows[0]?.n ?? -1;
  }

  describe('migrate()', () => {
    it('applies the ledger once when several deploys migrate at the same time', async () => {
      await onEachServerConnection(fx.url, 'select 1'); // all open, handed out in turn
      const results = await Promise.all(
        Array.from({ length: 4 }, () =>
          migrate({ connectionString: pooler.url(fx.url), schema: 'deployed_at_once' }),
        ),
      );
      expect(results.flatMap((result) => result.applied)).toEqual(MIGRATION_NAMES);
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from deployed_at_once.ledger_migrations`.execute(fx.db);
      expect(rows[0]?.n).toBe(MIGRATION_NAMES.length);
    });

    it("leaves other clients' search_path alone, and no lock for the next deploy to wait for", async () => {
      await sql`create table public.orders (id int)`.execute(fx.db);
      const { rows } = await sql<{ path: string }>`
        select current_setting('search_path') as path`.execute(fx.db);
      const defaultPath = rows[0]?.path;
      await onEachServerConnection(fx.url, 'select 1'); // all open, handed out in turn

      const schema = 'through_pooler';
      expect(await migrate({ connectionString: pooler.url(fx.url), schema })).toEqual({
        applied: MIGRATION_NAMES,
      });
      // The functions kept the schema migrate() set for its own transaction only.
      await expectAcquireOperationWorks(fx.db, schema);

      // Every pooled server connection still has the default search_path: an application's
      // unqualified names still find its tables.
      const sessions = await onEachServerConnection<{ path: string; orders: number }>(
        fx.url,
        `select current_setting('search_path') as path, (select count(*)::int from orders) as orders`,
      );
      expect(sessions.map(({ path, orders }) => ({ path, orders }))).toEqual(
        Array(POOL_SIZE).fill({ path: defaultPath, orders: 0 }),
      );
      // No lock outlived the call, so the next deploy does not wait for one, directly or not.
      expect(await advisoryLocks(fx.db)).toBe(0);
      expect(await migrate({ connectionString: fx.url, schema })).toEqual({ applied: [] });
      expect(await migrate({ connectionString: pooler.url(fx.url), schema })).toEqual({
        applied: [],
      });
    });
  });

  describe('scheduleCleanup()', () => {
    /** Inserts `count` entries under `prefix` that expired an hour ago. */
    async function insertExpired(prefix: string, count: number) {
      await sql`
        insert into idempotency.ledger (scope, key, expires_at)
        select 'pooled', ${prefix} || '-' || g, statement_timestamp() - interval '1 hour'
          from generate_series(1, ${count}::int) g`.execute(fx.db);
    }

    it('deletes on every tick, and leaves the lock free for another instance', async () => {
      // All server connections open: the pooler hands them out in turn, so a tick's statements
      // outside a transaction would land on different ones.
      await onEachServerConnection(fx.url, 'select 1');
      await insertExpired('first', 25);
      const ticks: CleanupTick[] = [];
      const sixTicks = deferred();
      const schedule = scheduleCleanup(pooledDb(fx.url, 2), {
        intervalMs: 1,
        batchSize: 10,
        pauseMs: 0,
        // Each tick leaves 5 expired entries for the next one to find.
        onTick: async (tick) => {
          ticks.push(tick);
          if (ticks.length === 6) sixTicks.resolve();
          else await insertExpired(`after-${ticks.length}`, 5);
        },
        onError: (error) => sixTicks.reject(error),
      });
      await sixTicks.promise;
      await schedule.stop();

      expect(ticks).toEqual([
        { ran: true, deleted: 25 },
        ...Array(5).fill({ ran: true, deleted: 5 }),
      ]);
      expect(await advisoryLocks(fx.db)).toBe(0);
      // Another instance, connected directly, is not shut out by anything left behind.
      await insertExpired('direct', 3);
      const direct = deferred<CleanupTick>();
      const other = scheduleCleanup(fx.db, { onTick: direct.resolve, onError: direct.reject });
      expect(await direct.promise).toEqual({ ran: true, deleted: 3 });
      await other.stop();
    });
  });

  describe('withIdempotency()', () => {
    it('executes each key once under concurrent duplicates from two instances, and replays the first response byte for byte', async () => {
      const instances = [pooledDb(fx.url, 10), pooledDb(fx.url, 10)];
      const keys = Array.from({ length: 30 }, (_, i) => `pooled-${i}`);
      const call = async (db: Kysely<Database>, key: string, onConcurrent: 'wait' | 'reject') => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await withIdempotency(
              db,
              { scope: 'pooled', key, onConcurrent },
              async (trx) => {
                const row = await trx
                  .insertInto('payments')
                  .values({ scope: 'pooled', key, amount: 100 })
                  .returning('id')
                  .executeTakeFirstOrThrow();
                // Key order and text that a jsonb round trip or a re-encoding would change.
                return { z: 1, a: [row.id, 'é€😀', 1e21], key };
              },
            );
          } catch (error) {
            // A client that was told 409 retries, as it should.
            if (!(error instanceof IdempotencyConflictError) || attempt === 200) throw error;
          }
        }
      };
      const calls = keys.flatMap((key) =>
        Array.from({ length: 8 }, (_, i) =>
          call(instances[i % 2] as Kysely<Database>, key, i < 4 ? 'wait' : 'reject').then(
            (result) => ({ key, ...result }),
          ),
        ),
      );
      const results = await Promise.all(calls);

      for (const key of keys) {
        expect(await fx.countPayments(key, 'pooled')).toBe(1);
        const forKey = results.filter((result) => result.key === key);
        const executed = forKey.filter((result) => !result.replayed);
        expect(executed).toHaveLength(1);
        const first = JSON.stringify(executed[0]?.response);
        expect(forKey.map((result) => JSON.stringify(result.response))).toEqual(
          Array(forKey.length).fill(first),
        );
      }
    });
  });
  describe('the outbox', () => {
    it('publishes each stream in commit order from two relays, and leaves no setting or lock on the server connections', async () => {
      await onEachServerConnection(fx.url, 'select 1'); // all open, handed out in turn
      const connection = await openAmqp();
      const recorded = await recordedQueue(connection, 'pooled-outbox');
      const intervals: PublishInterval[] = [];
      const relays = await Promise.all(
        [0, 1].map(async (relay) => {
          const channel = await connection.createConfirmChannel();
          const publish = amqpPublisher(channel, { routingKey: () => recorded.queue });
          return createOutboxRelay(pooledDb(fx.url, 2), {
            publish: timed(relay, publish, intervals),
            pollIntervalMs: 5,
          });
        }),
      );
      try {
        for (const relay of relays) relay.start();
        const produced = await produce(pooledDb(fx.url, 4), {
          producers: 4,
          perProducer: 25,
          topic: recorded.queue,
          streamOf: (producer, i) => `pooled-stream-${(producer + i) % 3}`,
        });
        await recorded.waitFor(produced.length);
        await Promise.all(relays.map((relay) => relay.stop()));
        expectStreamsInOrder(
          recorded.delivered.map((message) => message.messageId),
          produced,
        );
        expectNoOverlap(intervals);
      } finally {
        await Promise.all(relays.map((relay) => relay.stop()));
        await recorded.remove();
        await connection.close();
      }
      // The deletes' synchronous_commit was their own transaction's: every server connection is
      // back to the server's setting, and holds no lock.
      const sessions = await onEachServerConnection<{ commit: string }>(
        fx.url,
        `select current_setting('synchronous_commit') as commit`,
      );
      expect(sessions.map(({ commit }) => commit)).toEqual(Array(POOL_SIZE).fill('on'));
      expect(await advisoryLocks(fx.db)).toBe(0);
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from idempotency.outbox`.execute(fx.db);
      expect(rows[0]?.n).toBe(0);
    });
  });
});
