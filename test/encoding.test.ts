import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LedgerSchemaError, MIGRATIONS_DIRECTORY, withIdempotency } from '../src/index.ts';
import { newPool } from './support/database.ts';

// A LATIN1 database whose ledger was created by hand (another migration tool applying our SQL):
// a scope outside LATIN1 cannot be stored there, and the caller hears why.
const name = `idempotency_test_latin1_${randomBytes(6).toString('hex')}`;
let latin1: Kysely<unknown> | undefined;

async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await admin(
    `create database ${name} template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'`,
  );
  const url = new URL(inject('adminDatabaseUrl'));
  url.pathname = `/${name}`;
  latin1 = new Kysely({ dialect: new PostgresDialect({ pool: newPool(url.toString(), 2) }) });
  const migration = readFileSync(join(MIGRATIONS_DIRECTORY, '00001-create-ledger.sql'), 'utf8');
  await sql`create schema idempotency`.execute(latin1);
  await latin1.connection().execute(async (conn) => {
    await sql`set search_path to idempotency`.execute(conn);
    await sql.raw(migration).execute(conn);
    await sql`reset search_path`.execute(conn);
  });
});
afterAll(async () => {
  await latin1?.destroy();
  await admin(`drop database if exists ${name} with (force)`);
});

describe('a database that is not UTF-8', () => {
  it('refuses a scope its encoding cannot hold with a LedgerSchemaError, and writes nothing', async () => {
    const db = latin1 as Kysely<unknown>;
    const call = withIdempotency(db, { scope: 'café-€', key: 'k-1' }, async () => 'ok');
    await expect(call).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(call).rejects.toMatchObject({ problem: 'unsupported' });
    const { rows } = await sql<{
      n: number;
    }>`select count(*)::int as n from idempotency.ledger`.execute(db);
    expect(rows[0]?.n).toBe(0);
  });
});
