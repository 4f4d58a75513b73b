/**
 * Checks that the operation tables of migration 00002 work in a schema: acquire_operation takes a
 * new key, then reports it held, and its row is in that schema's table.
 */
import { type Kysely, sql } from 'kysely';
import { expect } from 'vitest';

export interface ExpectAcquireOperationOptions {
  /** The key to acquire: new in `schema`. Default `op-k`. */
  key?: string;
  /**
   * The caller's search_path, which must not matter: the function finds its tables through the
   * search_path it captured (SET search_path FROM CURRENT). Default `public`.
   */
  searchPath?: string;
}

/**
 * Acquires `key` twice with `schema.acquire_operation`, each call in its own transaction with
 * `searchPath` as the session's: the first holds it, the second finds it held.
 *
 * @example
 * ```ts
 * await migrate({ connectionString, schema: 'app' });
 * await expectAcquireOperationWorks(db, 'app', { searchPath: 'other_ledger' });
 * ```
 */
export async function expectAcquireOperationWorks<DB>(
  db: Kysely<DB>,
  schema: string,
  { key = 'op-k', searchPath = 'public' }: ExpectAcquireOperationOptions = {},
): Promise<void> {
  // A lease far longer than the test: the second call finds it live however slow the machine.
  const acquire = () =>
    db.transaction().execute(async (trx) => {
      await sql`set local search_path to ${sql.id(searchPath)}`.execute(trx);
      const { rows } = await sql<{ outcome: string; token: number | null; resumed: boolean }>`
        select outcome, fencing_token::int as token, resumed
          from ${sql.id(schema, 'acquire_operation')}('s', ${key}, 'n', null, null, 600000, 1000, 86400000)`.execute(
        trx,
      );
      return rows;
    });
  expect(await acquire()).toEqual([{ outcome: 'acquired', token: 1, resumed: false }]);
  expect(await acquire()).toEqual([{ outcome: 'held', token: null, resumed: false }]);
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from ${sql.id(schema, 'operations')}
     where scope = 's' and key = ${key} and state = 'in_progress'`.execute(db);
  expect(rows[0]?.n).toBe(1);
}
