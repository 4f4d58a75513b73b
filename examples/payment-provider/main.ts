// Runs the fake payment provider as a process of its own, so that a test can SIGKILL it:
//
//   PORT=4010 STATE_FILE=/tmp/provider.json node examples/payment-provider/main.ts
//
// PORT: 0 or unset picks a free port. STATE_FILE: unset keeps the state in memory only.
// FAULT_PLAN: a fault plan as JSON, in force from the start (see fault-plan.ts).
// Prints `listening on http://127.0.0.1:<port>` once it accepts requests; SIGTERM exits 0.

import { parseFaultPlan } from './fault-plan.ts';
import { startPaymentProvider } from './server.ts';

function fail(message: string): never {
  process.stderr.write(`payment provider: ${message}\n`);
  process.exit(2);
}

const port = Number(process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail('PORT must be a port number');

let faultPlan: ReturnType<typeof parseFaultPlan> | undefined;
if (process.env.FAULT_PLAN) {
  try {
    faultPlan = parseFaultPlan(JSON.parse(process.env.FAULT_PLAN));
  } catch {
    fail('FAULT_PLAN must be JSON');
  }
  if (!faultPlan.ok) fail(`FAULT_PLAN: ${faultPlan.message}`);
}

const provider = await startPaymentProvider({
  port,
  stateFile: process.env.STATE_FILE || undefined,
  faultPlan: faultPlan?.ok ? faultPlan.plan : undefined,
}).catch((error: unknown) => fail(String(error)));
// Tools that start the provider wait for this line.
process.stdout.write(`listening on ${provider.url}\n`);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  provider.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Started over IPC (provider-process.ts): if the parent dies, don't keep the port.
process.on('disconnect', stop);
