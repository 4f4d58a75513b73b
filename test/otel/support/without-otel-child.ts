/**
 * Run by without-otel.test.ts: a process in which no @opentelemetry package can be loaded, as in
 * an application that never installed one. It makes one withIdempotency call against the
 * database in argv[2] with a subscriber on the call channel, and prints what it saw as JSON.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier.startsWith('@opentelemetry/')) {
      throw Object.assign(new Error(`Cannot find package '${specifier}'`), {
        code: 'ERR_MODULE_NOT_FOUND',
      });
    }
    return nextResolve(specifier, context);
  },
});

const { Kysely, PostgresDialect } = await import('kysely');
const pg = await import('pg');
const library = await import('../../../src/index.ts');

const outcomes: string[] = [];
tracingChannel(library.WITH_IDEMPOTENCY_CHANNEL).asyncEnd.subscribe((event) => {
  outcomes.push(String((event as { outcome?: string }).outcome));
});
const db = new Kysely({
  dialect: new PostgresDialect({
    pool: new pg.default.Pool({ connectionString: process.argv[2] }),
  }),
});
const key = `without-otel-${process.pid}`;
const first = await library.withIdempotency(db, { scope: 's', key }, async () => ({ ok: 1 }));
const second = await library.withIdempotency(db, { scope: 's', key }, async () => ({ ok: 2 }));
await db.destroy();

let otelSubpath = 'loaded';
try {
  await import('../../../src/otel/index.ts');
} catch (error) {
  otelSubpath = (error as { code?: string }).code ?? 'failed';
}
console.log(JSON.stringify({ outcomes, replayed: [first.replayed, second.replayed], otelSubpath }));
