// Smoke test for the test harness itself: if this fails, every other test
// file fails for the same reason.

import { sql } from 'kysely';
import pg from 'pg';
import { expect, inject, test } from 'vitest';
import { countCheckedOutClients, createTestDatabase, databaseExists } from './support/database.ts';

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
    await expect.poll(() => testDb.pool.totalCount).toBe(0);
    const again = await sql<{ one: number }>`select 1 as one`.execute(testDb.db);
    expect(again.rows).toEqual([{ one: 1 }]);
    expect(countCheckedOutClients(testDb)).toBe(0);
  } finally {
    await testDb.drop();
  }
});
