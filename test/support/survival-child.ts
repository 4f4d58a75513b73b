/**
 * A small service under load whose database connections the test kills. Usage:
 *   node survival-child.ts <databaseUrl> <protected|unprotected>
 * Reads commands on stdin, one per line: `pause` (finish the calls in flight, answer `paused`),
 * `resume`, `stop` (finish, print a JSON summary, exit 0). With `protected`, the pool has the
 * listeners from handlePoolErrors(); with `unprotected` it has none.
 */
import { createInterface } from 'node:readline';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { handlePoolErrors, withIdempotency } from '../../src/index.ts';
import { createPayment, type Database } from './ledger-fixture.ts';

const [url, mode] = process.argv.slice(2);
if (!url || (mode !== 'protected' && mode !== 'unprotected')) {
  throw new Error('usage: survival-child.ts <url> <protected|unprotected>');
}
const pool = new pg.Pool({ connectionString: url, max: 5, application_name: 'survival-child' });
let connectionErrors = 0;
if (mode === 'protected') handlePoolErrors(pool, () => connectionErrors++);
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

const keys = Array.from({ length: 40 }, (_, i) => `survival-${i}`);
let calls = 0;
let failures = 0;
let paused = false;
let stopping = false;

/** One worker: calls withIdempotency for keys in turn, retrying a key until it gets an answer. */
async function worker(offset: number) {
  let i = offset;
  while (!paused && !stopping) {
    const key = keys[i % keys.length] as string;
    calls++;
    try {
      await withIdempotency(db, { scope: 'survival', key }, createPayment('survival', key));
      i++;
    } catch {
      // A terminated connection: a service would answer 500, and its client would retry.
      failures++;
    }
  }
}

let workers: Promise<void>[] = [];
const start = () => {
  workers = Array.from({ length: 8 }, (_, n) => worker(n * 5));
};
start();
process.stdout.write('ready\n');

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'pause' || line === 'stop') {
    paused = line === 'pause';
    stopping = line === 'stop';
    await Promise.all(workers);
    if (line === 'pause') {
      process.stdout.write('paused\n');
      continue;
    }
    const { rows } = await sql<{ duplicates: number }>`
      select count(*)::int as duplicates from (
        select key from payments where scope = 'survival' group by key having count(*) > 1
      ) d`.execute(db);
    const summary = { calls, failures, connectionErrors, duplicates: rows[0]?.duplicates };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    await db.destroy();
    process.exit(0);
  }
  if (line === 'resume') {
    paused = false;
    start();
  }
}
