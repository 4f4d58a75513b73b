// One fresh database per test file (or per test): tests never see each
// other's rows, and files can run in parallel against the same server.

import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { adminQuery, connect, withDatabase } from './admin-query.ts';

export type TestDatabase = {
  url: string;
  name: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests query tables the library creates at runtime
  db: Kysely<any>;
  /** The pool behind `db`, for assertions such as countCheckedOutClients(). */
  pool: pg.Pool;
  /** Destroys `db` and drops the database, even if connections are still open. */
  drop(): Promise<void>;
};

/** Room for the 50-way concurrency tests plus a few extra connections. */
const POOL_SIZE = 60;

/** The clients each pool made by newPool() has handed out and not taken back yet. */
const checkedOutClients = new WeakMap<pg.Pool, Set<pg.PoolClient>>();

export function newPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  const checkedOut = new Set<pg.PoolClient>();
  checkedOutClients.set(pool, checkedOut);
  pool.on('acquire', (client) => checkedOut.add(client));
  pool.on('release', (_error, client) => checkedOut.delete(client));
  // When the server kills the backend of an idle pooled client (a
  // pg_terminate_backend(), a restart), pg emits 'error' on the pool and
  // discards the client. Unhandled, that error would crash the test process.
  pool.on('error', () => {});
  // A checked-out client whose backend dies between two queries emits 'error' too, and the pool
  // listens only to idle clients: the query in flight (or the next one) reports the failure.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Clients currently checked out of the pool: 0 once nothing leaked one. */
export function countCheckedOutClients(target: pg.Pool | { pool: pg.Pool }): number {
  const pool = target instanceof pg.Pool ? target : target.pool;
  return pool.totalCount - pool.idleCount;
}

/**
 * Fails unless every client of `pool` is back in it. A client that is never released holds a
 * connection, and maybe an open transaction with its locks, until the process exits.
 */
export function expectNoCheckedOutClients(pool: pg.Pool, what = 'the pool'): void {
  expect(
    countCheckedOutClients(pool),
    `clients of ${what} still checked out (${pool.waitingCount} callers waiting for one)`,
  ).toBe(0);
}

/**
 * Takes back the clients of a pool made by newPool() that were never released, closing their
 * connections: whatever leaked them no longer holds up the next tests, nor `pool.end()`, which
 * would wait for them for ever.
 */
export function destroyCheckedOutClients(pool: pg.Pool): void {
  for (const client of checkedOutClients.get(pool) ?? []) client.release(true);
}

export type CreateTestDatabaseOptions = {
  /**
   * The database to copy: by default the empty template0, for tests of migrate() itself. Ledger
   * fixtures pass the migrated template the global setup built (`ledgerTemplateDatabase`).
   */
  template?: string;
};

export async function createTestDatabase(
  options: CreateTestDatabaseOptions = {},
): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `idempotency_test_${randomBytes(8).toString('hex')}`;
  // Never the default template1: CREATE DATABASE fails while anyone is connected
  // to its template, and nobody connects to template0 or to the ledger template.
  const template = options.template ?? 'template0';
  await adminQuery(
    adminUrl,
    (client) =>
      `create database ${client.escapeIdentifier(name)} template ${client.escapeIdentifier(template)}`,
  );

  const url = withDatabase(adminUrl, name);
  const pool = newPool(url, POOL_SIZE);
  const db: TestDatabase['db'] = new Kysely({ dialect: new PostgresDialect({ pool }) });
  let dropped: Promise<void> | undefined;
  const drop = () => {
    dropped ??= (async () => {
      destroyCheckedOutClients(pool);
      await db.destroy();
      await adminQuery(
        adminUrl,
        (client) => `drop database if exists ${client.escapeIdentifier(name)} with (force)`,
      );
    })();
    return dropped;
  };
  return { url, name, db, pool, drop };
}

/**
 * An empty database (no ledger) for the whole test file, created before its tests and dropped
 * after them: for tests of migrate() and the CLI, which build the ledger themselves. The returned
 * object is filled in by `beforeAll`.
 */
export function useTestDatabase(): TestDatabase {
  const database = {} as TestDatabase;
  beforeAll(async () => {
    Object.assign(database, await createTestDatabase());
  });
  afterAll(async () => {
    await database.drop?.();
  });
  return database;
}

/** Whether a database of that name exists on the admin server. */
export async function databaseExists(name: string): Promise<boolean> {
  const adminUrl = inject('adminDatabaseUrl');
  const client = await connect(adminUrl);
  try {
    const { rowCount } = await client.query('select from pg_database where datname = $1', [name]);
    return rowCount === 1;
  } finally {
    await client.end();
  }
}
