/**
 * A fresh database with the ledger migrated and a `payments` table standing for the caller's
 * business data, cloned from the template the global setup built (ledger-template.ts). Tests
 * count payments to prove that a key executed once.
 */
import { type Generated, type Kysely, sql } from 'kysely';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { withIdempotency } from '../../src/index.ts';
import { deferred } from './barrier.ts';
import {
  createTestDatabase,
  destroyCheckedOutClients,
  expectNoCheckedOutClients,
  type TestDatabase,
} from './database.ts';

export interface PaymentsTable {
  // bigserial: pg returns int8 as a string.
  id: Generated<string>;
  scope: string;
  key: string;
  amount: number;
}

export interface Database {
  payments: PaymentsTable;
}

export interface LedgerFixture extends TestDatabase {
  db: Kysely<Database>;
  /** Business rows written for `key` (in any scope unless `scope` is given). */
  countPayments(key: string, scope?: string): Promise<number>;
  /** Ledger rows for `key`, read straight from the table. */
  countEntries(key: string, scope?: string): Promise<number>;
}

/**
 * A database cloned from the migrated template, for a test that needs a second one (a shard):
 * the caller drops it. Test files use {@link useLedgerFixture} for their own.
 */
export async function createLedgerFixture(): Promise<LedgerFixture> {
  const database = await createTestDatabase({ template: inject('ledgerTemplateDatabase') });
  const db = database.db as Kysely<Database>;
  const count = async (table: string, key: string, scope?: string) => {
    const { rows } = await sql<{ count: string }>`
      select count(*) as count from ${sql.table(table)}
       where key = ${key} and (${scope ?? null}::text is null or scope = ${scope ?? null})`.execute(
      db,
    );
    return Number(rows[0]?.count);
  };
  return {
    ...database,
    db,
    countPayments: (key, scope) => count('payments', key, scope),
    countEntries: (key, scope) => count('idempotency.ledger', key, scope),
  };
}

/**
 * The fixture of a test file: a fresh database created before its tests and dropped after them.
 * The returned object is filled in by `beforeAll`, so tests read `fx.db` as usual. After each
 * test, it fails the test if a client of `fx.pool` is still checked out.
 *
 * @example
 * ```ts
 * const fx = useLedgerFixture();
 * it('executes once', async () => {
 *   await withIdempotency(fx.db, { scope: 's', key: 'k' }, createPayment('s', 'k'));
 *   expect(await fx.countPayments('k')).toBe(1);
 * });
 * ```
 */
export function useLedgerFixture(): LedgerFixture {
  const fx = {} as LedgerFixture;
  beforeAll(async () => {
    Object.assign(fx, await createLedgerFixture());
  });
  // After-hooks run in reverse order of registration: the file's own afterEach, registered after
  // this one, runs first and may still release a client its test held on purpose.
  afterEach(() => {
    if (!fx.pool) return;
    try {
      expectNoCheckedOutClients(fx.pool, "the fixture's pool");
    } finally {
      // The test that leaked fails; the next ones start with every client back.
      destroyCheckedOutClients(fx.pool);
    }
  });
  afterAll(async () => {
    await fx.drop?.();
  });
  return fx;
}

/** A business write as a handler would do it: insert a payment, return what the client sees. */
export function createPayment(scope: string, key: string, amount = 100) {
  return async (trx: Kysely<Database>) => {
    const row = await trx
      .insertInto('payments')
      .values({ scope, key, amount })
      .returning(['id', 'amount'])
      .executeTakeFirstOrThrow();
    return { status: 201, body: { paymentId: String(row.id), amount: row.amount } };
  };
}

let counter = 0;
/** A key no other test uses. */
export function uniqueKey(label = 'key'): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Starts a first call for (scope, key) that writes its payment and then holds its transaction
 * open until `release()`: duplicates sent meanwhile meet a call in flight.
 */
export async function startHeldCall(db: Kysely<Database>, scope: string, key: string) {
  const inside = deferred();
  const release = deferred();
  const first = withIdempotency(db, { scope, key }, async (trx) => {
    const response = await createPayment(scope, key)(trx);
    inside.resolve();
    await release.promise;
    return response;
  });
  await inside.promise;
  return { first, release: () => release.resolve() };
}
