// `npm run bench [-- --quick] [-- --repetitions N] [-- --only http,...] [-- --framework express]`:
// benchmarks the built package (dist/) against a dedicated database, prints markdown tables and
// writes every raw figure to benchmarks/results/<timestamp>.json. Never part of `npm test`.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { measureCleanup } from './cleanup.ts';
import { type BenchDatabase, openBenchDatabase } from './database.ts';
import { HTTP_NOTES, httpCheckLine, httpTable } from './http/http-table.ts';
import { runHttp } from './http/run-http.ts';
import { stopServerProcesses } from './http/server-process-client.ts';
import { runInstrumentation } from './instrumentation.ts';
import { INSTRUMENTATION_NOTES, instrumentationTable } from './instrumentation-report.ts';
import { migrate } from './library.ts';
import { runMessaging } from './messaging.ts';
import { MESSAGING_NOTES, messagingTable } from './messaging-report.ts';
import {
  addedCostLines,
  OPERATIONS_NOTES,
  operationsCheckLine,
  operationsTable,
  operationsWaitsTable,
  pathsTable,
} from './operations/operations-table.ts';
import { runOperations } from './operations/run-operations.ts';
import { runOutbox } from './outbox.ts';
import { OUTBOX_NOTES, outboxTables } from './outbox-report.ts';
import { connectRedis, type RedisConnection, removeRunKeys } from './powertools.ts';
import {
  cleanupTable,
  hotKeyLines,
  scaleTable,
  storageTable,
  throughputTable,
  waitsTable,
} from './report.ts';
import { runRtt } from './rtt.ts';
import { RTT_NOTES, rttOverheadLine, rttPingTable, rttTable } from './rtt-report.ts';
import { measureScale } from './scale.ts';
import { measureStorage } from './storage.ts';
import { runThroughput } from './throughput.ts';
import { startWaitSampler, type WaitSampler } from './waits.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    repetitions: { type: 'string' },
    only: { type: 'string' },
    framework: { type: 'string', multiple: true },
  },
});
const quick = args.quick === true || process.env.BENCH_QUICK === '1';
const repetitions = Number(args.repetitions ?? process.env.BENCH_REPETITIONS ?? (quick ? 1 : 3));
if (!Number.isInteger(repetitions) || repetitions < 1) throw new Error('--repetitions: a count');

const SECTIONS = [
  'throughput',
  'instrumentation',
  'operations',
  'messaging',
  'outbox',
  'rtt',
  'http',
  'storage',
  'scale',
  'cleanup',
] as const;
type Section = (typeof SECTIONS)[number];
// `--only http` (or `--only throughput,http`) runs those sections alone, to iterate on them.
const only = args.only?.split(',').map((name) => name.trim());
const unknownSections = only?.filter((name) => !(SECTIONS as readonly string[]).includes(name));
if (unknownSections?.length) {
  throw new Error(`--only: unknown section(s) ${unknownSections}; known: ${SECTIONS.join(', ')}`);
}
const sections = SECTIONS.filter((section) => only === undefined || only.includes(section));
const runs = (section: Section) => sections.includes(section);

// Quick: a smoke run in about a minute. Full: about 12 minutes on a 2-core machine.
// The paced cleanup pass: the default batch size, each batch followed by a pause.
const PACED_CLEANUP = { pauseMs: 10 };

const settings = {
  mode: quick ? 'quick' : 'full',
  sections,
  throughput: { repetitions, warmupMs: quick ? 300 : 1000, cellMs: quick ? 700 : 4000 },
  operations: { repetitions, warmupMs: quick ? 200 : 500, cellMs: quick ? 500 : 2500 },
  // 12 cells (4 paths x off, events, otel): about 110 s in a full run.
  instrumentation: { repetitions, warmupMs: quick ? 200 : 500, cellMs: quick ? 500 : 3000 },
  // 39 cells (3 routes x 5 paths x 2 concurrencies, the proxy's own cost, SELECT 1 and PING on
  // every route): about 160 s in a full run.
  // 9 cells (3 consumers x direct c=1, c=4, RabbitMQ), each a fixed count of fresh messages.
  messaging: { repetitions, messages: quick ? 500 : 3000 },
  // 7 cells (3 producer calls, the relay and its baseline on 1 and 50 streams).
  outbox: { repetitions, count: quick ? 400 : 2000 },
  rtt: {
    repetitions,
    warmupMs: quick ? 100 : 300,
    cellMs: quick ? 300 : 1500,
    pings: quick ? 120 : 300,
  },
  http: {
    repetitions,
    warmupMs: quick ? 300 : 1000,
    cellMs: quick ? 700 : 3000,
    // `--framework express` (repeatable): only those adapters; default all.
    frameworks: args.framework ?? [],
  },
  storageRows: quick ? 2_000 : 20_000,
  scale: {
    sizes: [10_000, quick ? 100_000 : 1_000_000] as [number, number],
    opsPerCell: quick ? 200 : 1000,
    repetitions,
  },
  cleanup: {
    rows: quick ? 200_000 : 1_000_000,
    baselineMs: quick ? 1500 : 5000,
    paced: PACED_CLEANUP,
  },
};

const startedAt = new Date();
const loadAverageAtStart = os.loadavg();
const started = performance.now();
const progress = (line: string) =>
  console.error(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

const THROUGHPUT_NOTES = [
  'Every op: one charges row inserted in its own transaction, a 210-byte response; a pg pool of',
  '16 shared by the workers. Ours passes `request` (fingerprint checked on replay). Powertools:',
  'CachePersistenceLayer over one @redis/client connection, key = event.key, default expiry, no',
  'local cache, no payload validation (broken for the cache layer in 2.35, powertools#5705).',
  '"vs Powertools" compares ops/s: first execution with first execution, replay with replay.',
  '',
].join('\n');

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `idempotency-bench-${randomBytes(6).toString('hex')}`;
let database: BenchDatabase | undefined;
// Kept while the database is being created, so that a signal meanwhile still drops it.
let opening: Promise<BenchDatabase> | undefined;
let redis: RedisConnection | undefined;
let sampler: WaitSampler | undefined;

let tearingDown: Promise<void> | undefined;
function teardown(): Promise<void> {
  tearingDown ??= (async () => {
    try {
      await stopServerProcesses();
      await sampler?.stop();
      if (redis) await removeRunKeys(redis, keyPrefix).finally(() => redis?.close());
    } finally {
      const opened = database ?? (await opening?.catch(() => undefined));
      await opened?.close();
    }
  })();
  return tearingDown;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: dropping the benchmark database and Redis keys`);
    void teardown().finally(() => process.exit(130));
  });
}

try {
  opening = openBenchDatabase();
  database = await opening;
  const { server, db, url } = database;
  await migrate({ connectionString: url });
  sampler = await startWaitSampler(url);
  // Redis serves the Powertools variants of the throughput and RTT sections only.
  const needsRedis = runs('throughput') || runs('rtt');
  if (needsRedis) redis = await connectRedis(redisUrl);

  const serverSettings = Object.entries(server.settings)
    .map(([name, value]) => `${name}=${value}`)
    .join(', ');
  const header = [
    `# idempotency-ledger benchmark (${settings.mode}): ${repetitions} repetition(s), interleaved`,
    '',
    `- server: PostgreSQL ${server.version} at ${server.address} (${server.source === 'embedded' ? 'embedded, started for this run' : 'DATABASE_URL'}), database ${database.name}`,
    `  - ${serverSettings}`,
    '  - numbers differ between servers (fsync, disk, version): compare runs on the same server only',
    `- sections: ${sections.join(', ')}${only ? ' (--only)' : ''}`,
    `- redis: ${redis ? `${redis.version} at ${redisUrl}` : needsRedis ? `nothing answers at ${redisUrl}: Powertools variants SKIPPED` : 'unused'}`,
    `- machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, load average ${loadAverageAtStart[0]?.toFixed(2)} at start`,
  ].join('\n');
  console.log(header);
  if (needsRedis && !redis) {
    progress(`no Redis at ${redisUrl} (set REDIS_URL): skipping the Powertools variants`);
  }

  let throughput: Awaited<ReturnType<typeof runThroughput>> | undefined;
  if (runs('throughput')) {
    progress('throughput');
    throughput = await runThroughput(db, redis, keyPrefix, settings.throughput, sampler, progress);
    console.log(`\n## Throughput and latency (medians of ${repetitions})\n`);
    console.log(THROUGHPUT_NOTES);
    console.log(throughputTable(throughput));
    console.log(`\n${hotKeyLines(throughput)}`);
    console.log('\n### Where the Postgres sessions were (pg_stat_activity every 25 ms)\n');
    console.log(waitsTable(throughput));
  }

  let instrumentation: Awaited<ReturnType<typeof runInstrumentation>> | undefined;
  if (runs('instrumentation')) {
    progress('instrumentation');
    instrumentation = await runInstrumentation(db, settings.instrumentation, progress);
    console.log(`\n## Instrumentation on and off (medians of ${repetitions})\n`);
    console.log(INSTRUMENTATION_NOTES);
    console.log(instrumentationTable(instrumentation));
  }

  let operations: Awaited<ReturnType<typeof runOperations>> | undefined;
  if (runs('operations')) {
    progress('operations');
    operations = await runOperations(db, settings.operations, sampler, progress);
    console.log(`\n## Operations (idempotency-ledger/operations), medians of ${repetitions}\n`);
    console.log(OPERATIONS_NOTES);
    console.log('### Statements per path (one call, alone)\n');
    console.log(pathsTable(operations));
    console.log('\n### Throughput and latency\n');
    console.log(operationsTable(operations));
    console.log(`\nWhat each piece adds:\n\n${addedCostLines(operations)}`);
    console.log(`\n${operationsCheckLine(operations)}`);
    console.log('\n### Where the Postgres sessions were (pg_stat_activity every 25 ms)\n');
    console.log(operationsWaitsTable(operations));
  }

  let messaging: Awaited<ReturnType<typeof runMessaging>> | undefined;
  if (runs('messaging')) {
    progress('messaging');
    messaging = await runMessaging(db, settings.messaging, progress);
    console.log(
      `\n## Messaging: consumers per message and in batches (medians of ${repetitions})\n`,
    );
    if ('skipped' in messaging) {
      progress(`${messaging.skipped}: skipping the messaging section`);
      console.log(`SKIPPED: ${messaging.skipped}.`);
    } else {
      console.log(MESSAGING_NOTES);
      console.log(messagingTable(messaging));
    }
  }

  let outbox: Awaited<ReturnType<typeof runOutbox>> | undefined;
  if (runs('outbox')) {
    progress('outbox');
    outbox = await runOutbox(db, settings.outbox, progress);
    console.log(`\n## Outbox: producers and the relay (medians of ${repetitions})\n`);
    if ('skipped' in outbox) {
      progress(`${outbox.skipped}: skipping the outbox section`);
      console.log(`SKIPPED: ${outbox.skipped}.`);
    } else {
      console.log(OUTBOX_NOTES);
      console.log(outboxTables(outbox));
    }
  }

  let rtt: Awaited<ReturnType<typeof runRtt>> | undefined;
  if (runs('rtt')) {
    progress('rtt');
    const rttStarted = performance.now();
    rtt = await runRtt(url, redis ? redisUrl : undefined, keyPrefix, settings.rtt, progress);
    const seconds = ((performance.now() - rttStarted) / 1000).toFixed(0);
    console.log(`\n## Across a round-trip time (medians of ${repetitions}; ${seconds} s)\n`);
    if ('skipped' in rtt) {
      progress(`${rtt.skipped}: skipping the RTT section`);
      console.log(`SKIPPED: ${rtt.skipped}.`);
    } else {
      console.log(RTT_NOTES);
      console.log(rttTable(rtt));
      console.log('\n### The added round trip, verified (one connection each, interleaved)\n');
      console.log(rttPingTable(rtt));
      console.log(`\n${rttOverheadLine(rtt)}`);
    }
  }

  let http: Awaited<ReturnType<typeof runHttp>> | undefined;
  if (runs('http')) {
    progress('http');
    http = await runHttp(db, url, settings.http, sampler, progress);
    console.log(`\n## HTTP adapters against the bare route (medians of ${repetitions})\n`);
    console.log(HTTP_NOTES);
    console.log(httpTable(http));
    console.log(`\n${httpCheckLine(http)}`);
  }

  let storage: Awaited<ReturnType<typeof measureStorage>> | undefined;
  if (runs('storage')) {
    progress('storage');
    storage = await measureStorage(db, url, settings.storageRows);
    console.log('\n## Storage per ledger row\n');
    console.log(storageTable(storage));
  }

  let scale: Awaited<ReturnType<typeof measureScale>> | undefined;
  if (runs('scale')) {
    progress('scale');
    scale = await measureScale(db, url, settings.scale, progress);
    console.log('\n## Latency against ledger size (c=1; VACUUM ANALYZE after the fill)\n');
    console.log(scaleTable(scale));
  }

  let cleanup: Awaited<ReturnType<typeof measureCleanup>> | undefined;
  if (runs('cleanup')) {
    progress('cleanup');
    cleanup = await measureCleanup(db, url, settings.cleanup, sampler, progress);
    console.log('\n## Cleanup\n');
    console.log(cleanupTable(cleanup));
    console.log(
      `\nPlan of one cleanup batch: ${cleanup.plan.map((line) => line.trim()).join(' / ')}`,
    );
  }

  const durationMs = performance.now() - started;
  const results = {
    startedAt: startedAt.toISOString(),
    durationMs,
    settings,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      totalMemBytes: os.totalmem(),
      platform: `${os.platform()} ${os.release()}`,
      node: process.version,
      // Anything else running moves the numbers: interleaving spreads it, it does not remove it.
      loadAverageAtStart,
      loadAverageAtEnd: os.loadavg(),
    },
    server: { ...server, database: database.name },
    redis: redis
      ? { url: redisUrl, version: redis.version }
      : { skipped: needsRedis ? `no answer at ${redisUrl}` : 'throughput and rtt not run' },
    throughput,
    instrumentation,
    operations,
    messaging,
    outbox,
    rtt,
    http,
    storage,
    scale,
    cleanup,
  };
  await mkdir(new URL('./results/', import.meta.url), { recursive: true });
  const file = `results/${startedAt.toISOString().replace(/[:.]/g, '-')}.json`;
  await writeFile(new URL(file, import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
  console.log(
    `\nFinished in ${(durationMs / 1000).toFixed(0)} s (load average ${os.loadavg()[0]?.toFixed(2)} ` +
      `at the end); raw figures in benchmarks/${file}`,
  );
  if (throughput && hotKeyLines(throughput).includes('✗')) process.exitCode = 1;
  if (http && httpCheckLine(http).includes('✗')) process.exitCode = 1;
  if (operations && operationsCheckLine(operations).includes('✗')) process.exitCode = 1;
} finally {
  await teardown();
}
