// The admin functions on a database that is not UTF-8 (its ledger created by hand, as another
// migration tool would): a key its encoding cannot hold is refused with a LedgerSchemaError whose
// message carries neither the key nor its bytes, as the core's calls are.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { inspectKey, listEntries, releaseKey } from '../../src/admin/index.ts';
import { LedgerSchemaError, MIGRATIONS_DIRECTORY } from '../../src/index.ts';
import { newPool } from '../support/database.ts';

const name = `idempotency_test_admin_latin1_${randomBytes(6).toString('hex')}`;
let latin1: Kysely<unknown> | undefined;

async function asAdmin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await asAdmin(
    `create database ${name} template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'`,
  );
  const url = new URL(inject('adminDatabaseUrl'));
  url.pathname = `/${name}`;
  latin1 = new Kysely({ dialect: new PostgresDialect({ pool: newPool(url.toString(), 2) }) });
  await sql`create schema idempotency`.execute(latin1);
  await latin1.connection().execute(async (conn) => {
    await sql`set search_path to idempotency`.execute(conn);
    for (const file of ['00001-create-ledger.sql', '00002-create-operations.sql']) {
      await sql.raw(readFileSync(join(MIGRATIONS_DIRECTORY, file), 'utf8')).execute(conn);
    }
    await sql`reset search_path`.execute(conn);
  });
});
afterAll(async () => {
  await latin1?.destroy();
  await asAdmin(`drop database if exists ${name} with (force)`);
});

describe('admin functions on a database that is not UTF-8', () => {
  it('refuse a key its encoding cannot hold with a LedgerSchemaError that does not quote it', async () => {
    const db = latin1 as Kysely<unknown>;
    const key = 'sk_live_€_secret';
    const calls = [
      () => inspectKey(db, { scope: 's', key }),
      () => releaseKey(db, { scope: 's', key }),
      () => listEntries(db, { scopePrefix: key }),
    ];
    for (const call of calls) {
      const error = await call().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(LedgerSchemaError);
      expect(error).toMatchObject({ problem: 'unsupported', schema: 'idempotency' });
      expect((error as Error).message).not.toMatch(/sk_live|€|0xe2/);
    }
  });
});
