// Smoke test for the test harness itself: if this fails, every other test
// file fails for the same reason.

import { sql } from 'kysely';
import pg from 'pg';
import { expect, inject, test } from 'vitest';
import { migrate } from '../src/index.ts';
import { withDatabase } from './support/admin-query.ts';
import {
  countCheckedOutClients,
  createTestDatabase,
  databaseExists,
  destroyCheckedOutClients,
  expectNoCheckedOutClients,
} from './support/database.ts';

test('creates a fresh database, queries it and drops it', async () => {
  const testDb = await createTestDatabase();
  try {
    expect(testDb.name).toMatch(/^idempotency_test_/);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(testDb.db);
    expect(rows).toEqual([{ one: 1 }]);
    expect(await databaseExists(testDb.name)).toBe(true);
    expect(countCheckedOutClients(testDb)).toBe(0);
  } finally {
    await testDb.drop();
  }
  expect(await databaseExists(testDb.name)).toBe(false);
  await testDb.drop(); // a second drop is harmless
});

test('survives the server killing an idle pooled connection', async () => {
  const testDb = await createTestDatabase();
  try {
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(testDb.db);
    const admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
    await admin.connect();
    try {
      await admin.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
    } finally {
      await admin.end();
    }
    // The pool notices the dead idle client, emits 'error' and discards it.
    await expect
      .poll(() => testDb.pool.totalCount, {
        timeout: 10_000,
        message: 'the pool to discard the client whose backend was terminated',
      })
      .toBe(0);
    const again = await sql<{ one: number }>`select 1 as one`.execute(testDb.db);
    expect(again.rows).toEqual([{ one: 1 }]);
    expect(countCheckedOutClients(testDb)).toBe(0);
  } finally {
    await testDb.drop();
  }
});

test('clones the migrated template: the ledger is up to date, with the payments table, empty', async () => {
  const testDb = await createTestDatabase({ template: inject('ledgerTemplateDatabase') });
  try {
    const { rows } = await sql<{ entries: number; payments: number }>`
      select (select count(*) from idempotency.ledger)::int as entries,
             (select count(*) from payments)::int as payments`.execute(testDb.db);
    expect(rows).toEqual([{ entries: 0, payments: 0 }]);
    expect(await migrate({ connectionString: testDb.url })).toEqual({ applied: [] });
  } finally {
    await testDb.drop();
  }
});

test('refuses connections to the template, which would make every clone fail', async () => {
  const template = inject('ledgerTemplateDatabase');
  const client = new pg.Client({
    connectionString: withDatabase(inject('adminDatabaseUrl'), template),
  });
  client.on('error', () => {});
  // 55000: database "..." is not currently accepting connections.
  await expect(client.connect()).rejects.toMatchObject({ code: '55000' });
  await client.end().catch(() => undefined);
});

test('expectNoCheckedOutClients fails while a client is out; destroyCheckedOutClients takes it back', async () => {
  const testDb = await createTestDatabase();
  try {
    const client = await testDb.pool.connect();
    expect(() => expectNoCheckedOutClients(testDb.pool)).toThrow(/still checked out/);
    client.release();
    expectNoCheckedOutClients(testDb.pool);

    await testDb.pool.connect(); // never released
    destroyCheckedOutClients(testDb.pool);
    expectNoCheckedOutClients(testDb.pool);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(testDb.db);
    expect(rows).toEqual([{ one: 1 }]);
  } finally {
    await testDb.drop();
  }
});
