/**
 * A client process that calls withIdempotency, writes a payment inside fn, reports "inside-fn"
 * on stdout and then hangs, so the test can SIGKILL it mid-transaction.
 * Usage: node crash-child.ts <databaseUrl> <scope> <key>
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { withIdempotency } from '../../src/index.ts';
import { createPayment, type Database } from './ledger-fixture.ts';

const [url, scope, key] = process.argv.slice(2);
if (!url || !scope || !key) throw new Error('usage: crash-child.ts <url> <scope> <key>');

const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
});
await withIdempotency(db, { scope, key }, async (trx) => {
  const response = await createPayment(scope, key)(trx);
  process.stdout.write('inside-fn\n');
  // Never returns: the parent kills this process while the transaction is open.
  await new Promise(() => setInterval(() => undefined, 1000));
  return response;
});
