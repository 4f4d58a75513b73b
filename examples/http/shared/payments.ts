/**
 * What the example payment services share, whatever their framework: the `payments` table, the
 * request body's validation, the merchant header, and start-up and shutdown. Each
 * `examples/http/<framework>/server.ts` is the part a user of that framework writes.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { type Generated, Kysely, PostgresDialect, type Selectable, sql } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { handlePoolErrors, migrate } from '../../../src/index.ts';

export interface PaymentsTable {
  id: Generated<string>;
  merchant_id: string;
  idempotency_key: string;
  amount_cents: number;
  currency: string;
  created_at: Generated<Date>;
}

export interface Database {
  payments: PaymentsTable;
}

/** `POST /payments`'s body. */
export const paymentRequest = z.strictObject({
  amount_cents: z.int().positive().max(100_000_000),
  currency: z.literal('EUR'),
});
export type PaymentRequest = z.infer<typeof paymentRequest>;

/** A payment as the API returns it. */
export function toPayment(row: Selectable<PaymentsTable>) {
  return {
    id: row.id,
    merchant_id: row.merchant_id,
    amount_cents: row.amount_cents,
    currency: row.currency,
    created_at: row.created_at.toISOString(),
  };
}

const PAYMENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `id` can name a payment (a UUID): anything else is a 404 without a query. */
export function isPaymentId(id: string): boolean {
  return PAYMENT_ID.test(id);
}

const MERCHANT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The `Merchant-Id` header, which stands in for the authenticated principal (a real service takes
 * it from the credentials); `undefined` when it is missing or malformed.
 */
export function merchantIdOf(header: string | readonly string[] | undefined): string | undefined {
  return typeof header === 'string' && MERCHANT_ID.test(header) ? header : undefined;
}

/** The service's own problems (RFC 9457), answered before the idempotent part. */
export const problems = {
  unauthenticated: {
    type: 'https://payments.example/problems/unauthenticated',
    title: 'Merchant-Id header required',
    status: 401,
  },
  invalidBody: (detail: string) => ({
    type: 'https://payments.example/problems/invalid-body',
    title: 'Invalid payment request',
    status: 400,
    detail,
  }),
  notFound: {
    type: 'https://payments.example/problems/not-found',
    title: 'Not found',
    status: 404,
  },
  internal: {
    type: 'https://payments.example/problems/internal',
    title: 'Internal server error',
    status: 500,
  },
} as const;

/** Validates a parsed JSON body: the payment request, or the problem that answers it. */
export function validatePayment(
  body: unknown,
):
  | { ok: true; value: PaymentRequest }
  | { ok: false; problem: ReturnType<typeof problems.invalidBody> } {
  const result = paymentRequest.safeParse(body);
  if (result.success) return { ok: true, value: result.data };
  const detail = result.error.issues
    .map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`)
    .join('; ');
  return { ok: false, problem: problems.invalidBody(detail) };
}

/** A pool and Kysely instance for `DATABASE_URL`, migrated, with the `payments` table. */
export async function openPaymentsDatabase(): Promise<Kysely<Database>> {
  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) {
    process.stderr.write('set DATABASE_URL to a database this example may migrate\n');
    process.exit(2);
  }
  // handlePoolErrors: without an 'error' listener, a connection that breaks while idle (a
  // restarted server) would crash the process.
  const pool = handlePoolErrors(new pg.Pool({ connectionString, max: 16 }), (error) =>
    process.stderr.write(`connection lost: ${error.message}\n`),
  );
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  await migrate({ connectionString });
  // No unique constraint on (merchant_id, idempotency_key), deliberately: the ledger alone keeps
  // payments single, and tests count rows to prove it.
  await db.schema
    .createTable('payments')
    .ifNotExists()
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('merchant_id', 'text', (col) => col.notNull())
    .addColumn('idempotency_key', 'text', (col) => col.notNull())
    .addColumn('amount_cents', 'integer', (col) => col.notNull())
    .addColumn('currency', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  return db;
}

/** `PORT` from the environment: `0` (the default) picks a free port. */
export function portFromEnvironment(): number {
  const port = Number(process.env.PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    process.stderr.write('PORT must be a port number, or 0 for any free port\n');
    process.exit(2);
  }
  return port;
}

/**
 * Prints the line that tools starting the example wait for, and on SIGTERM (or SIGINT) stops
 * accepting connections, lets requests in flight finish, closes the pool and exits 0.
 *
 * @param close - Stops the framework's server (`server.close()`, `app.close()`...).
 */
export function announceAndStopOnSignal(
  server: Server,
  close: () => Promise<void>,
  db: Kysely<Database>,
): void {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
  let stopping = false;
  // A keep-alive connection whose last request finishes after close() began would stay open
  // until keepAliveTimeout (5 s in Node, 72 s in Fastify 5.12: fastify#7044), holding the exit
  // back: close it as soon as it is idle.
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    res.once('finish', () => {
      if (stopping) setImmediate(() => server.closeIdleConnections());
    });
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close()
      .then(() => db.destroy())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          process.stderr.write(`shutdown failed: ${String(error)}\n`);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
