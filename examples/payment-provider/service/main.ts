// The payment service as a process:
//
//   DATABASE_URL=postgres://... PROVIDER_URL=http://127.0.0.1:4010 PORT=3000 \
//     node examples/payment-provider/service/main.ts
//
// PORT: 0 or unset picks a free port. COMPLETER_INTERVAL_MS: pause between the completer's
// passes (5000). Migrates the ledger and creates the orders table, then prints
// `listening on http://127.0.0.1:<port>`. SIGTERM (or SIGINT) stops accepting connections, lets
// the requests in flight finish, stops the completer, closes the pool and exits 0.

import { openDatabase, prepareDatabase } from './orders.ts';
import { startPaymentService } from './payment-service.ts';

function fail(message: string): never {
  process.stderr.write(`payment service: ${message}\n`);
  process.exit(2);
}

const connectionString = process.env.DATABASE_URL || fail('set DATABASE_URL');
const providerUrl = process.env.PROVIDER_URL || fail('set PROVIDER_URL to the payment provider');
const port = Number(process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail('PORT must be a port number');
const completerIntervalMs = Number(process.env.COMPLETER_INTERVAL_MS ?? 5_000);
if (!Number.isInteger(completerIntervalMs) || completerIntervalMs < 1) {
  fail('COMPLETER_INTERVAL_MS must be a positive number of milliseconds');
}

const log = (message: string) => process.stderr.write(`${message}\n`);
const db = openDatabase(connectionString, (error) => log(`connection lost: ${error.message}`));
try {
  await prepareDatabase(db, connectionString);
} catch (error) {
  await db.destroy();
  fail(`cannot prepare the database: ${error instanceof Error ? error.message : String(error)}`);
}
const service = await startPaymentService({ db, providerUrl, port, completerIntervalMs, log });
// Tools that start the service wait for this line.
process.stdout.write(`listening on ${service.url}\n`);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  service
    .close()
    .then(() => db.destroy())
    .then(
      () => process.exit(0),
      (error: unknown) => {
        log(`shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
