/**
 * The service's own table, `orders`, and the database it opens at startup: the ledger migrated
 * (with the operation tables) and the orders table created.
 */
import { type Generated, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { handlePoolErrors, migrate } from '../../../src/index.ts';

export interface OrdersTable {
  // bigserial: pg returns int8 as a string.
  id: Generated<string>;
  customer: string;
  amount_cents: number;
  currency: string;
  /** `pending` until the provider answers, then `paid` or `declined`. */
  state: Generated<'pending' | 'paid' | 'declined'>;
  charge_id: string | null;
  created_at: Generated<Date>;
}

export interface Database {
  orders: OrdersTable;
}

/**
 * Migrates the ledger (`idempotency` schema, operation tables included) and creates `orders`:
 * safe to run from every instance at startup (`migrate()` takes a lock; the table is
 * `if not exists`).
 */
export async function prepareDatabase(
  db: Kysely<Database>,
  connectionString: string,
): Promise<void> {
  await migrate({ connectionString });
  // No unique constraint ties an order to a payment request, deliberately: the operation alone
  // keeps orders single, and the tests count rows to prove it.
  await db.schema
    .createTable('orders')
    .ifNotExists()
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('customer', 'text', (col) => col.notNull())
    .addColumn('amount_cents', 'integer', (col) => col.notNull())
    .addColumn('currency', 'text', (col) => col.notNull())
    .addColumn('state', 'text', (col) =>
      col.notNull().defaultTo('pending').check(sql`state in ('pending', 'paid', 'declined')`),
    )
    .addColumn('charge_id', 'text')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

/**
 * A Kysely instance on its own pool. handlePoolErrors: without an 'error' listener, a connection
 * that breaks while idle (a restarted server) would crash the process.
 */
export function openDatabase(
  connectionString: string,
  onConnectionLost: (error: Error) => void,
): Kysely<Database> {
  const pool = handlePoolErrors(
    new pg.Pool({ connectionString, max: 16, application_name: 'payment-service' }),
    onConnectionLost,
  );
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
