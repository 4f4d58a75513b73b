/**
 * Schemas that an earlier release migrated. Version 0.1's migrate() used @databases/pg-migrations
 * and shipped 00001 only, and users who manage their migrations with that tool apply the same
 * folder: migrate() must take such a schema over as it is, apply only the files it lacks, and the
 * folder must keep working with that tool. A schema that migrate() itself brought to an earlier
 * file gets the later ones.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyMigrations, connect, sql as pgMigrationsSql } from '@databases/pg-migrations';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LedgerMigration,
  LedgerSchemaError,
  MIGRATIONS_DIRECTORY,
  migrate,
  readMigrations,
  withIdempotency,
} from '../src/index.ts';
import { readAppliedMigrations, recordApplied } from '../src/internal/applied-migrations.ts';
import { enqueueMessage } from '../src/outbox/index.ts';
import { useTestDatabase } from './support/database.ts';
import { expectAcquireOperationWorks } from './support/expect-acquire-operation.ts';

// One database for the file: each test works in a schema of its own.
const database = useTestDatabase();

/** Every file this version ships, in order; the first is the one 0.1 shipped. */
const MIGRATIONS = readMigrations();
/** The files 0.1 did not ship. */
const LATER = MIGRATIONS.slice(1);
/** As `ledger_migrations` records them. */
const RECORDS = MIGRATIONS.map(({ index, name, checksum }) => ({ index, name, checksum }));

/**
 * A folder holding 00001 alone: what 0.1 shipped, and what one of its instances applies when it
 * deploys.
 */
let folderOf01: string;
beforeAll(async () => {
  folderOf01 = await mkdtemp(join(tmpdir(), 'idempotency-0.1-migrations-'));
  await copyFile(
    join(MIGRATIONS_DIRECTORY, '00001-create-ledger.sql'),
    join(folderOf01, '00001-create-ledger.sql'),
  );
});
afterAll(async () => {
  if (folderOf01) await rm(folderOf01, { recursive: true, force: true });
});

/**
 * Applies `directory` with @databases/pg-migrations as 0.1's migrate() did: the schema created
 * first, then pg-migrations with search_path set to it (its bookkeeping tables land there too).
 */
async function applyWithPgMigrations(schema: string, directory = MIGRATIONS_DIRECTORY) {
  await sql`create schema if not exists ${sql.id(schema)}`.execute(database.db);
  const connection = connect({ connectionString: database.url, schema, bigIntMode: 'bigint' });
  const applied: string[] = [];
  try {
    await applyMigrations({
      connection,
      migrationsDirectory: directory,
      afterOperation: async (operation) => {
        if (operation.kind === 'apply') applied.push(operation.value.name);
      },
    });
  } finally {
    await connection.dispose();
  }
  return applied;
}

/** Pays once for `key`, with the ledger in `schema`. */
function pay(schema: string, key: string) {
  return withIdempotency(database.db, { scope: 's', key, schema }, async (trx) => {
    await sql`insert into public.payments values (${schema}, ${key})`.execute(trx);
    return { paid: key };
  });
}

/** A key executed, then replayed, with one business row: the ledger in `schema` works. */
async function expectWorkingLedger(schema: string, key = 'k') {
  await sql`create table if not exists public.payments (schema text, key text)`.execute(
    database.db,
  );
  expect(await pay(schema, key)).toEqual({ response: { paid: key }, replayed: false });
  expect(await pay(schema, key)).toEqual({ response: { paid: key }, replayed: true });
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from public.payments
     where schema = ${schema} and key = ${key}`.execute(database.db);
  expect(rows[0]?.n).toBe(1);
}

async function recorded(schema: string, table: string) {
  const { rows } = await sql<{ index: number; name: string }>`
    select index, name from ${sql.id(schema, table)} order by index`.execute(database.db);
  return rows;
}

/** What `ledger_migrations` records in `schema`, checksums included. */
async function ledgerMigrations(schema: string) {
  const { rows } = await sql<{ index: number; name: string; checksum: string }>`
    select index, name, checksum from ${sql.id(schema, 'ledger_migrations')}
     order by index`.execute(database.db);
  return rows;
}

async function tableExists(schema: string, table: string): Promise<boolean> {
  const { rows } = await sql<{ exists: boolean }>`
    select to_regclass(quote_ident(${schema}) || '.' || quote_ident(${table})) is not null
      as exists`.execute(database.db);
  return rows[0]?.exists ?? false;
}

/**
 * What this version's migrate() leaves in `schema` when it ships `migrations` only: the same
 * steps in one transaction (files applied under SET LOCAL search_path, then recorded by the
 * runner's own bookkeeping), without the files that came later.
 */
async function migrateWithOnly(schema: string, migrations: LedgerMigration[]) {
  await database.db.transaction().execute(async (trx) => {
    const found = await readAppliedMigrations(trx, schema);
    await sql`create schema if not exists ${sql.id(schema)}`.execute(trx);
    await sql`set local search_path to ${sql.id(schema)}`.execute(trx);
    for (const migration of migrations) await sql.raw(migration.sql).execute(trx);
    await recordApplied(trx, schema, found, migrations);
  });
}

describe('a schema migrated by @databases/pg-migrations', () => {
  it('works when a user applies the folder with @databases/pg-migrations', async () => {
    // As "With another migration tool" in the README shows it.
    const connection = connect({ connectionString: database.url, schema: 'by_tool' });
    await connection.query(pgMigrationsSql`CREATE SCHEMA IF NOT EXISTS by_tool`);
    await applyMigrations({ connection, migrationsDirectory: MIGRATIONS_DIRECTORY });
    await connection.dispose();

    expect(await recorded('by_tool', 'atdatabases_migrations_applied')).toEqual(
      MIGRATIONS.map(({ index, name }) => ({ index, name })),
    );
    await expectWorkingLedger('by_tool');
    // 00002's function captured the search_path pg-migrations set for its session.
    await expectAcquireOperationWorks(database.db, 'by_tool');
  });

  it('applies the later files with pg-migrations, for a user who upgrades the library', async () => {
    const schema = 'tool_upgrade';
    expect(await applyWithPgMigrations(schema, folderOf01)).toEqual(['00001-create-ledger.sql']);
    await expectWorkingLedger(schema);
    expect(await applyWithPgMigrations(schema)).toEqual(LATER.map(({ name }) => name));
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    await expectAcquireOperationWorks(database.db, schema);
  });

  it('is taken over by migrate() as it is when pg-migrations applied every file', async () => {
    const schema = 'whole_folder';
    expect(await applyWithPgMigrations(schema)).toEqual(MIGRATIONS.map(({ name }) => name));
    await expectWorkingLedger(schema);

    expect(await migrate({ connectionString: database.url, schema })).toEqual({ applied: [] });
    expect(await ledgerMigrations(schema)).toEqual(RECORDS);
    // The entry written before the switch still replays, and both parts go on working.
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    await expectWorkingLedger(schema, 'after-switch');
    await expectAcquireOperationWorks(database.db, schema);
    expect(await applyWithPgMigrations(schema)).toEqual([]);
  });

  it("is upgraded from 0.1 by migrate(): 00001 adopted, the later files applied, and recorded in pg-migrations' tables too", async () => {
    const schema = 'from_0_1';
    expect(await applyWithPgMigrations(schema, folderOf01)).toEqual(['00001-create-ledger.sql']);
    await expectWorkingLedger(schema);

    expect(LATER[0]?.name).toBe('00002-create-operations.sql');
    expect(await migrate({ connectionString: database.url, schema })).toEqual({
      applied: LATER.map(({ name }) => name),
    });
    expect(await ledgerMigrations(schema)).toEqual(RECORDS);
    expect(await recorded(schema, 'atdatabases_migrations_applied')).toEqual(
      MIGRATIONS.map(({ index, name }) => ({ index, name })),
    );
    // The entry written before the upgrade still replays, and the ledger goes on working.
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    await expectWorkingLedger(schema, 'after-upgrade');
    await expectAcquireOperationWorks(database.db, schema);
    expect(await migrate({ connectionString: database.url, schema })).toEqual({ applied: [] });

    // pg-migrations with this version's folder agrees: the scripts it finds recorded are the
    // files, so it applies nothing.
    expect(await applyWithPgMigrations(schema)).toEqual([]);
    // A 0.1 instance deploying after the upgrade refuses a schema migrated further than it knows,
    // and changes nothing.
    await expect(applyWithPgMigrations(schema, folderOf01)).rejects.toThrow(
      /00002-create-operations\.sql has been applied to the database but does not exist/,
    );
    expect(await ledgerMigrations(schema)).toEqual(RECORDS);
    expect(await recorded(schema, 'atdatabases_migrations_applied')).toHaveLength(
      MIGRATIONS.length,
    );
  });

  it('keeps the record of pg-migrations up to date, so that pg-migrations agrees with it', async () => {
    const schema = 'tables_only';
    // pg-migrations' tables, with nothing applied yet.
    const empty = await mkdtemp(join(tmpdir(), 'idempotency-no-migrations-'));
    try {
      expect(await applyWithPgMigrations(schema, empty)).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    expect(await migrate({ connectionString: database.url, schema })).toEqual({
      applied: MIGRATIONS.map(({ name }) => name),
    });
    expect(await recorded(schema, 'atdatabases_migrations_applied')).toEqual(
      MIGRATIONS.map(({ index, name }) => ({ index, name })),
    );
    // pg-migrations checks the recorded script against the file: it agrees, and applies nothing.
    expect(await applyWithPgMigrations(schema)).toEqual([]);
    await expectWorkingLedger(schema);
    await expectAcquireOperationWorks(database.db, schema);
  });

  it('is refused, and left as it was, when pg-migrations applied a different file', async () => {
    const schema = 'edited';
    await applyWithPgMigrations(schema);
    await sql`
      update ${sql.id(schema, 'atdatabases_migrations_applied')}
         set script = script || '-- edited'`.execute(database.db);

    const refused = migrate({ connectionString: database.url, schema });
    await expect(refused).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(refused).rejects.toMatchObject({ problem: 'modified', schema });
    const { rows } = await sql<{ exists: boolean }>`
      select to_regclass('edited.ledger_migrations') is not null as exists`.execute(database.db);
    expect(rows[0]?.exists).toBe(false);
  });
});

describe('a schema an earlier version of migrate() migrated', () => {
  it('gets the later files on the next migrate(), and keeps its entries', async () => {
    const schema = 'from_first_file';
    await migrateWithOnly(schema, MIGRATIONS.slice(0, 1));
    expect(await ledgerMigrations(schema)).toEqual(RECORDS.slice(0, 1));
    expect(await tableExists(schema, 'operations')).toBe(false);
    await expectWorkingLedger(schema);

    expect(await migrate({ connectionString: database.url, schema })).toEqual({
      applied: LATER.map(({ name }) => name),
    });
    expect(await ledgerMigrations(schema)).toEqual(RECORDS);
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    await expectAcquireOperationWorks(database.db, schema);
    expect(await migrate({ connectionString: database.url, schema })).toEqual({ applied: [] });
    // migrate() keeps its own record only: it creates no pg-migrations table.
    expect(await tableExists(schema, 'atdatabases_migrations_applied')).toBe(false);
  });

  it('gets the outbox (00004) on top of 00003, with its ledger entries kept, and the outbox works', async () => {
    const schema = 'from_00003';
    const upTo00003 = MIGRATIONS.filter(({ index }) => index <= 3);
    await migrateWithOnly(schema, upTo00003);
    await expectWorkingLedger(schema);
    expect(await tableExists(schema, 'outbox')).toBe(false);

    expect(await migrate({ connectionString: database.url, schema })).toEqual({
      applied: MIGRATIONS.filter(({ index }) => index > 3).map(({ name }) => name),
    });
    expect(await ledgerMigrations(schema)).toEqual(RECORDS);
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    const enqueued = await database.db
      .transaction()
      .execute((trx) =>
        enqueueMessage(trx, { stream: 's', topic: 't', payload: { n: 1 } }, { schema }),
      );
    expect(enqueued.position).toBe(1);
  });
});
