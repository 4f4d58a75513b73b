/**
 * A client process that runs the payment operation with a short lease, its charge slowed down by
 * the provider, so that the test can SIGKILL it while the charge is in flight.
 * Usage: node operation-child.ts <databaseUrl> <providerUrl> <scope> <key>
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { runOperation } from '../../../src/operations/index.ts';
import type { Database } from '../../support/ledger-fixture.ts';
import { paymentOperation } from '../payment-operation.ts';

const [url, providerUrl, scope, key] = process.argv.slice(2);
if (!url || !providerUrl || !scope || !key) {
  throw new Error('usage: operation-child.ts <databaseUrl> <providerUrl> <scope> <key>');
}
const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }),
});
const operation = paymentOperation({
  providerUrl,
  faults: new Map([[key, [{ mode: 'slow', delayMs: 1_500 }]]]),
  orderRuns: new Map(),
});
await runOperation(db, operation, {
  scope,
  key,
  request: { amount_cents: 1999, customer: 'cus_1' },
  leaseMs: 1_000,
});
