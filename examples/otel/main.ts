/**
 * A payment handler's calls, traced and measured: run it against a database and an OTLP endpoint
 * (an OpenTelemetry Collector, or Jaeger with OTLP on), then look for `withIdempotency` spans under
 * `POST /payments` and for the `idempotency.call.duration` histogram.
 *
 *   DATABASE_URL=postgres://localhost/app OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
 *     node examples/otel/main.ts
 */
import { randomUUID } from 'node:crypto';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrate, withIdempotency } from '../../src/index.ts';
import { startTelemetry } from './telemetry.ts';

const connectionString = process.env.DATABASE_URL;
if (!connectionString) throw new Error('Set DATABASE_URL to the database to use');
const endpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318';

// Telemetry first, so that everything after it is traced.
const telemetry = startTelemetry(endpoint, 'payments-example');
await migrate({ connectionString });
const db = new Kysely<{ example_payments: { key: string; amount: number } }>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString }) }),
});
await sql`create table if not exists example_payments (key text primary key, amount int not null)`.execute(
  db,
);

const tracer = trace.getTracer('payments-example');
/** What an HTTP handler for POST /payments does, in its request's span. */
function postPayment(key: string, amount: number) {
  return tracer.startActiveSpan('POST /payments', async (span) => {
    try {
      const { response, replayed } = await withIdempotency(
        db,
        { scope: 'merchant-42:create-payment', key, request: { amount } },
        async (trx) => {
          await trx.insertInto('example_payments').values({ key, amount }).execute();
          return { status: 201, amount };
        },
      );
      return `${response.status}${replayed ? ' (replayed)' : ''}`;
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      return `refused: ${(error as { status?: number }).status ?? 'error'}`;
    } finally {
      span.end();
    }
  });
}

const key = randomUUID();
console.log('first request:   ', await postPayment(key, 1000)); // executed
console.log('client retry:    ', await postPayment(key, 1000)); // replayed
console.log('reused, changed: ', await postPayment(key, 2000)); // key_reused: a 422

await db.destroy();
await telemetry.shutdown();
