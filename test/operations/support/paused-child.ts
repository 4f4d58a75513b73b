/**
 * A client process for the pause test: runs an operation whose step writes a payment, says
 * "inside" on stdout, and stays in its transaction for `holdMs` (the test SIGSTOPs it there), then
 * prints how the attempt ended and exits.
 * Usage: node paused-child.ts <databaseUrl> <scope> <key> <leaseMs> <holdMs>
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { runOperation } from '../../../src/operations/index.ts';
import type { Database } from '../../support/ledger-fixture.ts';
import { pausableOperation } from '../pausable-operation.ts';

const [url, scope, key, leaseMs, holdMs] = process.argv.slice(2);
if (!url || !scope || !key || !leaseMs || !holdMs) {
  throw new Error('usage: paused-child.ts <databaseUrl> <scope> <key> <leaseMs> <holdMs>');
}
const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 3 }) }),
});
const operation = pausableOperation(async () => {
  process.stdout.write('inside\n');
  await sleep(Number(holdMs));
});
const outcome = await runOperation(db, operation, {
  scope,
  key,
  request: null,
  leaseMs: Number(leaseMs),
}).then(
  (result) => `finished ${JSON.stringify(result.response)}`,
  (error: unknown) => `failed ${error instanceof Error ? error.constructor.name : String(error)}`,
);
process.stdout.write(`${outcome}\n`);
await db.destroy();
