// Runs the payment service as its own process, so the demo can SIGKILL it mid-request:
//
//   DATABASE_URL=postgres://... PORT=3000 node examples/payment-service/server-main.ts
//
// The database needs the ledger and the payments table; demo.ts creates both.

import type { AddressInfo } from 'node:net';
import { createPaymentService } from './server.ts';

const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  process.stderr.write('server-main: set DATABASE_URL\n');
  process.exit(2);
}

const service = createPaymentService(connectionString, {
  log: (message) => process.stderr.write(`${message}\n`),
});

service.server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = service.server.address() as AddressInfo;
  // demo.ts waits for this line.
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
});

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  service.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Started by demo.ts over IPC: if the demo dies, don't keep a port and database connections open.
process.on('disconnect', stop);
