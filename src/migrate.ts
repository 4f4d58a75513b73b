import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { LedgerSchemaError } from './errors.ts';
import { migrationLockKey } from './internal/advisory-locks.ts';
import {
  type AppliedMigrations,
  readAppliedMigrations,
  recordApplied,
} from './internal/applied-migrations.ts';
import { parseOptions } from './internal/parse-options.ts';
import { DEFAULT_SCHEMA, schemaNameSchema } from './internal/schema-name.ts';
import { traceMigrate } from './migrate-events.ts';
import { type LedgerMigration, readMigrations } from './migration-files.ts';
import { handlePoolErrors } from './pool-errors.ts';

export { MIGRATIONS_DIRECTORY } from './migration-files.ts';

/** Default of {@link MigrateOptions.connectTimeoutMs}: 10 seconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /**
   * A Postgres connection string, parsed by `pg` exactly as your application's `pg` parses it
   * (`postgres://app:p%40ss@db/app`, `postgres://app@/app?host=/var/run/postgresql`, `?sslmode=`…).
   * Needs CREATE on the database the first time, while the schema does not exist.
   */
  connectionString: string;
  /** Postgres schema to hold the ledger; created when missing. Default `idempotency`. */
  schema?: string;
  /**
   * Longest time to open the connection, up to the server's first answer: a host that accepts
   * the TCP connection and then says nothing fails the call instead of hanging a deploy.
   * Default 10 s. `pg` ignores a `connect_timeout` in the connection string; this is the setting.
   *
   * @example
   * ```ts
   * await migrate({ connectionString, connectTimeoutMs: 30_000 }); // a database that may be waking up
   * ```
   */
  connectTimeoutMs?: number;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** File names of the migrations applied by this call; empty when the schema was up to date. */
  applied: string[];
}

const migrateOptionsSchema = z.strictObject({
  connectionString: z.string().min(1),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
  connectTimeoutMs: z.int().positive().max(2_147_483_647).default(DEFAULT_CONNECT_TIMEOUT_MS),
});

/**
 * Creates or upgrades the ledger by applying the SQL files in `migrations/`, all in one
 * transaction: either every pending file is applied and recorded, or nothing is (the schema is
 * not even created). Safe to call from every instance at deploy time: a transaction-level
 * advisory lock serialises concurrent calls, so each migration is applied exactly once and the
 * others find nothing to do. Nothing outlives that transaction (the lock, `search_path`), so it
 * is safe through a transaction pooler such as PgBouncer.
 *
 * What was applied is recorded in `<schema>.ledger_migrations`, with a checksum of each file. A
 * schema that 0.1 migrated (with `@databases/pg-migrations`) is adopted as it is.
 *
 * @throws {InvalidIdempotencyOptionsError} for a missing connection string, an invalid schema
 *   name or timeout.
 * @throws {LedgerSchemaError} `problem: 'newer'` when a newer version of this library migrated the
 *   schema; `'modified'` when a migration applied earlier differs from this version's file;
 *   `'unsupported'` when the database is not UTF-8. Nothing was changed.
 * @throws Errors of `pg`, unchanged: a connection string it cannot parse, a connection refused or
 *   timed out (`connectTimeoutMs`), a missing privilege. Nothing was changed.
 *
 * @example
 * ```ts
 * const { applied } = await migrate({ connectionString: process.env.DATABASE_URL! });
 * ```
 */
export function migrate(options: MigrateOptions): Promise<MigrateResult> {
  return traceMigrate((describe) => migrateTraced(options, describe));
}

async function migrateTraced(
  options: MigrateOptions,
  describe: (schema: string) => void,
): Promise<MigrateResult> {
  const { connectionString, schema, connectTimeoutMs } = parseOptions(
    migrateOptionsSchema,
    options,
    'migrate',
  );
  describe(schema);
  const migrations = readMigrations();
  const pool = handlePoolErrors(
    new pg.Pool({ connectionString, max: 1, connectionTimeoutMillis: connectTimeoutMs }),
  );
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    // READ COMMITTED whatever the database's default: a call that waited for the lock must see
    // what the call before it committed, which a snapshot taken before the wait would hide.
    const applied = await db
      .transaction()
      .setIsolationLevel('read committed')
      .execute((trx) => migrateInTransaction(trx, schema, migrations));
    return { applied: applied.map((migration) => migration.name) };
  } finally {
    await db.destroy();
  }
}

async function migrateInTransaction(
  trx: Transaction<unknown>,
  schema: string,
  migrations: LedgerMigration[],
): Promise<LedgerMigration[]> {
  await refuseNonUtf8Database(trx, schema);
  // Held until this transaction ends, on whatever server connection a pooler gave it: it cannot
  // outlive the transaction, nor be released by (or leak to) another connection.
  await sql`select pg_advisory_xact_lock(${migrationLockKey(schema)})`.execute(trx);
  const found = await readAppliedMigrations(trx, schema);
  refuseUnknownMigrations(schema, migrations, found);
  const pending = migrations.filter((migration) => !found.byIndex.has(migration.index));
  if (pending.length === 0 && found.toAdopt.length === 0) return [];

  await sql`create schema if not exists ${sql.id(schema)}`.execute(trx);
  // The files name their objects unqualified, and their functions capture this search_path
  // (SET search_path FROM CURRENT). SET LOCAL: it ends with the transaction, so no pooled server
  // connection keeps it for the next client.
  await sql`set local search_path to ${sql.id(schema)}`.execute(trx);
  for (const migration of pending) {
    // No parameters: pg sends it as a simple query, which may hold many statements.
    await sql.raw(migration.sql).execute(trx);
  }
  await recordApplied(trx, schema, found, pending);
  return pending;
}

/**
 * The ledger stores keys, scopes and responses as text, and Postgres can only hold any Unicode
 * text in a UTF-8 database: elsewhere a non-ASCII key would fail much later, mid-request.
 */
async function refuseNonUtf8Database(trx: Transaction<unknown>, schema: string): Promise<void> {
  const { rows } = await sql<{ encoding: string }>`
    select current_setting('server_encoding') as encoding`.execute(trx);
  const encoding = rows[0]?.encoding;
  if (encoding === 'UTF8') return;
  throw new LedgerSchemaError({
    schema,
    problem: 'unsupported',
    message: `The database's encoding is ${encoding}, but the idempotency ledger needs UTF8: create the database with ENCODING 'UTF8'`,
  });
}

/** Refuses a schema that records migrations this version does not ship, or ships differently. */
function refuseUnknownMigrations(
  schema: string,
  migrations: LedgerMigration[],
  found: AppliedMigrations,
): void {
  const latest = migrations.length;
  const newest = Math.max(0, ...found.byIndex.keys());
  if (newest > latest) {
    throw new LedgerSchemaError({
      schema,
      problem: 'newer',
      message:
        `Schema "${schema}" has migration ${newest} applied, but this version of idempotency-ledger ` +
        `knows migrations up to ${latest}: upgrade the library`,
    });
  }
  for (const migration of migrations) {
    const applied = found.byIndex.get(migration.index);
    if (applied && applied.checksum !== migration.checksum) {
      throw new LedgerSchemaError({
        schema,
        problem: 'modified',
        message:
          `Migration ${migration.index} of schema "${schema}" was applied from a file that differs from ` +
          `this version's ${migration.name} (applied ${applied.name}, checksum ${applied.checksum}; ` +
          `file checksum ${migration.checksum}): was the migrations folder edited?`,
      });
    }
  }
}
