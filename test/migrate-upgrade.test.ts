/**
 * Schemas migrated by @databases/pg-migrations: version 0.1's migrate() used it, and users who
 * manage their migrations with it apply the same folder. migrate() must take such a schema over
 * as it is, and the folder must keep working with that tool.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyMigrations, connect, sql as pgMigrationsSql } from '@databases/pg-migrations';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  LedgerSchemaError,
  MIGRATIONS_DIRECTORY,
  migrate,
  readMigrations,
  withIdempotency,
} from '../src/index.ts';
import { useTestDatabase } from './support/database.ts';

// One database for the file: each test works in a schema of its own.
const database = useTestDatabase();

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

describe('a schema migrated by @databases/pg-migrations', () => {
  it('works when a user applies the folder with @databases/pg-migrations', async () => {
    // As "With another migration tool" in the README shows it.
    const connection = connect({ connectionString: database.url, schema: 'by_tool' });
    await connection.query(pgMigrationsSql`CREATE SCHEMA IF NOT EXISTS by_tool`);
    await applyMigrations({ connection, migrationsDirectory: MIGRATIONS_DIRECTORY });
    await connection.dispose();

    await expectWorkingLedger('by_tool');
  });

  it("is taken over by migrate() as it is: nothing applied again, pg-migrations' tables kept", async () => {
    const schema = 'from_0_1';
    await applyWithPgMigrations(schema);
    await expectWorkingLedger(schema);

    expect(await migrate({ connectionString: database.url, schema })).toEqual({ applied: [] });
    const [file] = readMigrations();
    const { rows } = await sql<{ index: number; name: string; checksum: string }>`
      select index, name, checksum from ${sql.id(schema, 'ledger_migrations')}`.execute(
      database.db,
    );
    expect(rows).toEqual([{ index: 1, name: file?.name, checksum: file?.checksum }]);
    expect(await recorded(schema, 'atdatabases_migrations_applied')).toEqual([
      { index: 1, name: '00001-create-ledger.sql' },
    ]);
    // The entry written before the upgrade still replays, and the ledger goes on working.
    expect(await pay(schema, 'k')).toEqual({ response: { paid: 'k' }, replayed: true });
    await expectWorkingLedger(schema, 'after-upgrade');
    expect(await migrate({ connectionString: database.url, schema })).toEqual({ applied: [] });
    // A 0.1 instance that deploys after the upgrade finds nothing to do.
    expect(await applyWithPgMigrations(schema)).toEqual([]);
  });

  it('keeps the record of pg-migrations up to date, so that a 0.1 deploy agrees with it', async () => {
    const schema = 'tables_only';
    // pg-migrations' tables, with nothing applied yet.
    const empty = await mkdtemp(join(tmpdir(), 'idempotency-no-migrations-'));
    try {
      expect(await applyWithPgMigrations(schema, empty)).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    expect(await migrate({ connectionString: database.url, schema })).toEqual({
      applied: ['00001-create-ledger.sql'],
    });
    expect(await recorded(schema, 'atdatabases_migrations_applied')).toEqual([
      { index: 1, name: '00001-create-ledger.sql' },
    ]);
    // pg-migrations checks the recorded script against the file: it agrees, and applies nothing.
    expect(await applyWithPgMigrations(schema)).toEqual([]);
    await expectWorkingLedger(schema);
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
