import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrate } from '../../src/index.ts';

/** The example's own tables, beside the ledger and the outbox (schema "idempotency"). */
export interface Database {
  orders: { id: string; customer: string; amount: number };
  /**
   * One row per card charge. No unique constraint on order_id, on purpose: it would hide a
   * duplicate charge instead of letting the demo count it.
   */
  charges: { id?: number; order_id: string; amount: number };
}

/** A Kysely instance whose pool survives a backend that dies under it. */
export function openDatabase(connectionString: string, max = 10): Kysely<Database> {
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', () => undefined);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Applies the ledger's migrations (the outbox is one of them) and creates the example's tables. */
export async function prepareDatabase(connectionString: string): Promise<void> {
  await migrate({ connectionString });
  const db = openDatabase(connectionString, 1);
  try {
    await sql`create table if not exists orders (
      id text primary key, customer text not null, amount integer not null)`.execute(db);
    await sql`create table if not exists charges (
      id bigserial primary key, order_id text not null, amount integer not null)`.execute(db);
  } finally {
    await db.destroy();
  }
}

/** Where the relay publishes and the payments consumer reads: names of the run's own. */
export function brokerNames(prefix: string) {
  return {
    exchange: `${prefix}.orders`,
    queue: `${prefix}.payments`,
    routingKey: 'order.placed',
  };
}

/** What each service process is started with: its database, the broker, the run's names. */
export function serviceEnvironment() {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('Set DATABASE_URL');
  return {
    databaseUrl,
    amqpUrl: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    names: brokerNames(process.env.EXAMPLE_PREFIX ?? 'shop'),
  };
}
