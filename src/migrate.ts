import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyMigrations, connect } from '@databases/pg-migrations';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { z } from 'zod';
import { LedgerSchemaError } from './errors.ts';
import { migrationLockKey } from './internal/advisory-locks.ts';
import { parseOptions } from './internal/parse-options.ts';
import { createPool } from './internal/pg-pool.ts';
import { sqlState, UNDEFINED_TABLE } from './internal/postgres-errors.ts';
import { DEFAULT_SCHEMA, schemaNameSchema } from './internal/schema-name.ts';

/** The SQL files this version of the library ships, in the order they apply. */
export const MIGRATIONS_DIRECTORY = fileURLToPath(new URL('../migrations/', import.meta.url));

/** Index of the newest migration this version ships; a database migrated further is refused. */
function latestMigrationIndex(): number {
  const indexes = readdirSync(MIGRATIONS_DIRECTORY)
    .filter((name) => name.endsWith('.sql'))
    .map((name) => Number.parseInt(name, 10));
  return Math.max(0, ...indexes.filter(Number.isInteger));
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** A Postgres connection string, e.g. `postgres://app@db/app`. Needs CREATE on the database. */
  connectionString: string;
  /** Postgres schema to hold the ledger; created when missing. Default `idempotency`. */
  schema?: string;
  /**
   * Time allowed for each connection to be established, in milliseconds. Default: none (pg's
   * default, wait as long as the network does).
   *
   * @example
   * ```ts
   * await migrate({ connectionString: process.env.DATABASE_URL!, connectTimeoutMs: 10_000 });
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
  // At most what a Node timer can wait.
  connectTimeoutMs: z.int().positive().max(2_147_483_647).optional(),
});

/**
 * Creates or upgrades the ledger by applying the SQL files in `migrations/`. Safe to call from
 * every instance at deploy time: a Postgres advisory lock serialises concurrent calls, so each
 * migration is applied exactly once, and the others wait and then find nothing to do.
 *
 * @throws {LedgerSchemaError} when the database was migrated by a newer version of this library.
 * @throws {InvalidIdempotencyOptionsError} for a missing connection string or an invalid schema.
 * @throws Errors of the connection and of `@databases/pg-migrations` (e.g. an applied migration
 *   whose file has changed), unchanged.
 *
 * @example
 * ```ts
 * await migrate({ connectionString: process.env.DATABASE_URL! });
 * ```
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const { connectionString, schema, connectTimeoutMs } = parseOptions(
    migrateOptionsSchema,
    options,
    'migrate',
  );
  // One dedicated connection holds the lock for the whole run; if this process dies, Postgres
  // drops the connection and the lock with it.
  const lockDb = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: createPool(connectionString, 1, connectTimeoutMs) }),
  });
  try {
    return await lockDb.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(${migrationLockKey(schema)})`.execute(conn);
      try {
        await sql`create schema if not exists ${sql.id(schema)}`.execute(conn);
        await refuseNewerSchema(conn, schema);
        return { applied: await applyFiles(connectionString, schema, connectTimeoutMs) };
      } finally {
        // If this fails the connection is broken, and closing it below releases the lock anyway;
        // the outcome of the migration is what the caller needs to hear about.
        await sql`select pg_advisory_unlock(${migrationLockKey(schema)})`
          .execute(conn)
          .catch(() => undefined);
      }
    });
  } finally {
    await lockDb.destroy();
  }
}

async function applyFiles(
  connectionString: string,
  schema: string,
  connectTimeoutMs: number | undefined,
): Promise<string[]> {
  const applied: string[] = [];
  // search_path = the ledger's schema: the SQL files name their objects unqualified, and
  // @databases/pg-migrations keeps its bookkeeping tables there too, one set per ledger schema.
  const connection = connect({
    connectionString,
    schema,
    bigIntMode: 'bigint',
    ...(connectTimeoutMs === undefined ? {} : { connectionTimeoutMilliseconds: connectTimeoutMs }),
  });
  try {
    await applyMigrations({
      connection,
      migrationsDirectory: MIGRATIONS_DIRECTORY,
      afterOperation: async (operation) => {
        if (operation.kind === 'apply') applied.push(operation.value.name);
      },
    });
  } finally {
    await connection.dispose();
  }
  return applied;
}

async function refuseNewerSchema(db: Kysely<unknown>, schema: string): Promise<void> {
  let newest: number;
  try {
    const { rows } = await sql<{ newest: number | null }>`
      select max(index) as newest
        from ${sql.id(schema, 'atdatabases_migrations_applied')}
       where not obsolete`.execute(db);
    newest = rows[0]?.newest ?? 0;
  } catch (error) {
    if (sqlState(error) === UNDEFINED_TABLE) return; // never migrated
    throw error;
  }
  const latest = latestMigrationIndex();
  if (newest > latest) {
    throw new LedgerSchemaError({
      schema,
      problem: 'newer',
      message:
        `Schema "${schema}" has migration ${newest} applied, but this version of idempotency-ledger ` +
        `knows migrations up to ${latest}: upgrade the library`,
    });
  }
}
