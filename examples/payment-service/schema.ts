import { type Generated, Kysely, PostgresDialect, type Selectable, sql } from 'kysely';
import pg from 'pg';
import { handlePoolErrors } from '../../src/index.ts';

export interface PaymentsTable {
  id: Generated<string>;
  merchant_id: string;
  amount_cents: number;
  currency: string;
  idempotency_key: string;
  created_at: Generated<Date>;
}

export interface Database {
  payments: PaymentsTable;
}

/** A payment as the API returns it: `created_at` is ISO text, as JSON carries it. */
export interface Payment {
  id: string;
  merchant_id: string;
  amount_cents: number;
  currency: string;
  idempotency_key: string;
  created_at: string;
}

export function toPayment(row: Selectable<PaymentsTable>): Payment {
  return {
    id: row.id,
    merchant_id: row.merchant_id,
    amount_cents: row.amount_cents,
    currency: row.currency,
    idempotency_key: row.idempotency_key,
    created_at: row.created_at.toISOString(),
  };
}

/**
 * A pool that survives its backends dying: handlePoolErrors() adds the 'error' listeners without
 * which pg's 'error' event, emitted when a connection breaks, would crash the whole service.
 */
export function createPool(
  connectionString: string,
  options: { max: number; applicationName: string; onError?: (error: Error) => void },
): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    application_name: options.applicationName,
  });
  return handlePoolErrors(pool, options.onError);
}

export function createDb(pool: pg.Pool): Kysely<Database> {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

export async function createPaymentsTable(db: Kysely<Database>): Promise<void> {
  // Deliberately no unique constraint on (merchant_id, idempotency_key): the ledger alone has to
  // keep payments single, and a constraint would hide a duplicate instead of letting us count it.
  await db.schema
    .createTable('payments')
    .ifNotExists()
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('merchant_id', 'text', (col) => col.notNull())
    .addColumn('amount_cents', 'integer', (col) => col.notNull())
    .addColumn('currency', 'text', (col) => col.notNull())
    .addColumn('idempotency_key', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}
