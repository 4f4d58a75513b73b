// npm run demo: a retry storm against a create-payment service that uses withIdempotency, with
// clients killed mid-request and the service SIGKILLed twice, then a count of what reached the
// database. Uses DATABASE_URL's server when set (in a database of its own, dropped at the end),
// a throwaway embedded Postgres otherwise.

import { migrate } from '../../src/index.ts';
import { Chaos } from './chaos.ts';
import { emptyTally, type LogicalRequest } from './client.ts';
import { provisionDatabase } from './database.ts';
import { checkErrorMapping } from './probes.ts';
import { createDb, createPaymentsTable, createPool } from './schema.ts';
import { startServerProcess } from './server-process.ts';
import { planRequests, runStorm, type StormPlan } from './storm.ts';
import { printSummary } from './summary.ts';
import { verify } from './verify.ts';

const plan: StormPlan = {
  requests: 600,
  merchants: 4,
  keysPerMerchant: 10,
  concurrency: 64,
  abortProbability: 0.2,
  maxAttemptsPerRequest: 100,
  deadlineMs: 45_000,
};

const started = performance.now();
const serverLog = new Set<string>();
const onServerLog = (line: string) => {
  if (serverLog.size < 5) serverLog.add(line);
};

const database = await provisionDatabase();
let chaos: Chaos | undefined;
const cleanUp = async () => {
  await Promise.allSettled((chaos?.processes ?? []).map((server) => server.stop()));
  await database.dispose();
};
// Ctrl-C must not leave a database (or an embedded server) behind either.
process.once('SIGINT', () => {
  void cleanUp().finally(() => process.exit(130));
});

let passed = false;
try {
  await migrate({ connectionString: database.url });
  const db = createDb(createPool(database.url, { max: 2, applicationName: 'payment-demo' }));
  try {
    await createPaymentsTable(db);
    const server = await startServerProcess(database.url, 0, onServerLog);
    const target = { url: `http://127.0.0.1:${server.port}` };
    const at = (fraction: number) => Math.round(plan.requests * fraction);
    chaos = new Chaos({
      server,
      databaseUrl: database.url,
      db,
      target,
      onLog: onServerLog,
      faults: [
        { at: at(0.2), fault: 'kill-server' },
        { at: at(0.45), fault: 'terminate-backends' },
        { at: at(0.6), fault: 'kill-server' },
      ],
    });

    const requests = planRequests(plan);
    const tally = emptyTally();
    const watched = chaos;
    await runStorm(requests, plan, target, tally, chaos.halted, (done) => watched.onProgress(done));
    await chaos.settled();

    const errorMapping = await checkErrorMapping(target.url, requests[0] as LogicalRequest);
    const verification = await verify(db, tally);
    passed = printSummary({
      where: database.description,
      plan,
      tally,
      verification,
      serverKills: chaos.serverKills,
      transactionsCutOff: chaos.transactionsCutOff,
      backendsTerminated: chaos.backendsTerminated,
      serverCrashed: chaos.processes.some((p) => p.crashed()),
      errorMapping,
      serverLog: [...serverLog],
      seconds: (performance.now() - started) / 1000,
    });
  } finally {
    await db.destroy();
  }
} catch (error) {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await cleanUp();
}
process.exitCode = passed ? 0 : 1;
