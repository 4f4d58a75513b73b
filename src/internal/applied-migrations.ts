/**
 * The record of which migrations a ledger schema has: migrate()'s own table, `ledger_migrations`,
 * in the ledger's schema. Version 0.1 applied the files with `@databases/pg-migrations`, whose
 * tables (`atdatabases_migrations_applied`, `atdatabases_migrations_version`) may sit beside it:
 * what they record counts as applied too, so such a schema upgrades without applying anything
 * twice. They are left in place and kept up to date: a 0.1 instance still deploying reads them,
 * finds what a newer version applied, and refuses to run against it instead of guessing.
 */
import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { LedgerMigration } from '../migration-files.ts';

/** migrate()'s table of applied migrations, in the ledger's schema. */
export const APPLIED_MIGRATIONS_TABLE = 'ledger_migrations';
/** The table in which `@databases/pg-migrations` (0.1's runner) records what it applied. */
export const LEGACY_APPLIED_MIGRATIONS_TABLE = 'atdatabases_migrations_applied';

/** A migration the schema records as applied. */
export interface AppliedMigration {
  index: number;
  name: string;
  /** SHA-256 of the SQL that was applied, hex. */
  checksum: string;
  appliedAt: Date;
}

/** What a ledger schema records: every applied migration, and where each record lives. */
export interface AppliedMigrations {
  /** By index: migrate()'s records, then pg-migrations' records of any index migrate() lacks. */
  byIndex: Map<number, AppliedMigration>;
  /** Records found only in pg-migrations' table: copied into migrate()'s by {@link recordApplied}. */
  toAdopt: AppliedMigration[];
  /** Whether pg-migrations' table exists, and must hear of what migrate() applies. */
  hasLegacyTable: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: the bookkeeping tables are queried with raw SQL.
type Executor = Kysely<any>;

/** Reads what `schema` records as applied; all empty when the schema or its tables are missing. */
export async function readAppliedMigrations(
  trx: Executor,
  schema: string,
): Promise<AppliedMigrations> {
  const { rows } = await sql<{ own: boolean; legacy: boolean }>`
    select to_regclass(quote_ident(${schema}) || '.' || ${APPLIED_MIGRATIONS_TABLE}) is not null as own,
           to_regclass(quote_ident(${schema}) || '.' || ${LEGACY_APPLIED_MIGRATIONS_TABLE}) is not null as legacy`.execute(
    trx,
  );
  const { own = false, legacy = false } = rows[0] ?? {};
  const byIndex = new Map<number, AppliedMigration>();
  if (own) {
    const recorded = await sql<AppliedMigration>`
      select index, name, checksum, applied_at as "appliedAt"
        from ${sql.id(schema, APPLIED_MIGRATIONS_TABLE)}`.execute(trx);
    for (const row of recorded.rows) byIndex.set(row.index, row);
  }
  const toAdopt: AppliedMigration[] = [];
  if (legacy) {
    // pg-migrations keeps the whole script; a checksum of it compares with the file's like ours.
    const recorded = await sql<{ index: number; name: string; script: string; appliedAt: Date }>`
      select index, name, script, applied_at as "appliedAt"
        from ${sql.id(schema, LEGACY_APPLIED_MIGRATIONS_TABLE)}
       where not obsolete
       order by index`.execute(trx);
    for (const { script, ...row } of recorded.rows) {
      if (byIndex.has(row.index)) continue;
      const adopted = { ...row, checksum: checksumOf(script) };
      byIndex.set(row.index, adopted);
      toAdopt.push(adopted);
    }
  }
  return { byIndex, toAdopt, hasLegacyTable: legacy };
}

/**
 * Records `applied` (just applied by this run) and the adopted records of pg-migrations in
 * migrate()'s table, creating it when missing; adds `applied` to pg-migrations' table too, when
 * that exists. Runs in the migrating transaction, with the lock held.
 */
export async function recordApplied(
  trx: Executor,
  schema: string,
  found: AppliedMigrations,
  applied: LedgerMigration[],
): Promise<void> {
  const table = sql.id(schema, APPLIED_MIGRATIONS_TABLE);
  await sql`
    create table if not exists ${table} (
      index integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`.execute(trx);
  for (const { index, name, checksum, appliedAt } of found.toAdopt) {
    await sql`
      insert into ${table} (index, name, checksum, applied_at)
      values (${index}, ${name}, ${checksum}, ${appliedAt})`.execute(trx);
  }
  for (const { index, name, checksum, sql: script } of applied) {
    await sql`
      insert into ${table} (index, name, checksum) values (${index}, ${name}, ${checksum})`.execute(
      trx,
    );
    if (!found.hasLegacyTable) continue;
    await sql`
      insert into ${sql.id(schema, LEGACY_APPLIED_MIGRATIONS_TABLE)}
        (index, name, script, applied_at, ignored_error, obsolete)
      values (${index}, ${name}, ${script}, now(), null, false)`.execute(trx);
  }
}

function checksumOf(script: string): string {
  return createHash('sha256').update(script, 'utf8').digest('hex');
}
