/**
 * A batch consumer process for the crash test of consumeBatch: it takes the deliveries of the
 * message ids given, whose handler writes a payment (scope, message id), and stops inside the
 * handler of the last one it handles, every payment of the batch written and its transaction still open;
 * it prints "in-handler" there, to be SIGKILLed.
 *
 * Usage: node batch-consumer-child.ts <databaseUrl> <scope> <id,id,...>
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { consumeBatch } from '../../src/consumer/index.ts';
import { createPayment, type Database } from './ledger-fixture.ts';

const [url, scope, ids] = process.argv.slice(2);
if (!url || !scope || !ids) throw new Error('usage: batch-consumer-child.ts <url> <scope> <ids>');
const messageIds = ids.split(',');

const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
});
let handled = 0;
const hang = () => new Promise<never>(() => setInterval(() => undefined, 1000));

await consumeBatch(
  db,
  {
    scope,
    onDeadLetter: () => {
      throw new Error('no message is dead-lettered in the crash test');
    },
  },
  messageIds.map((messageId) => ({ message: messageId, messageId, attempt: 1 })),
  async (trx, messageId) => {
    const response = await createPayment(scope, messageId)(trx);
    handled += 1;
    if (handled === messageIds.length) {
      process.stdout.write('in-handler\n');
      await hang();
    }
    return response;
  },
);
