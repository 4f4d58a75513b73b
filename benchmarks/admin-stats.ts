// `ledgerStats` (idempotency-ledger/admin) on a large ledger: the exact form (one sequential scan)
// and `estimate: true` (planner statistics and the expiry index), interleaved, plus a listing by
// scope prefix, on the built package. The ledger is filled as the other sections fill theirs
// (1000 scopes, 210-byte responses), with a tenth of it expired.
//
//   npm run build && node benchmarks/admin-stats.ts [--rows 1000000] [--repetitions 5]
//
// Same database rules as `npm run bench`: DATABASE_URL (a superuser URL) gets a throwaway
// database, dropped at the end; without it, an embedded Postgres.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openBenchDatabase } from './database.ts';
import { fillLedger, vacuumAnalyze } from './fill.ts';
import { importBuilt, migrate } from './library.ts';

const { ledgerStats, listEntries } =
  await importBuilt<typeof import('../src/admin/index.ts')>('admin/index.js');

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    repetitions: { type: 'string', default: '5' },
  },
});
const rows = Number(values.rows);
const repetitions = Number(values.repetitions);
const SCHEMA = 'idempotency';

const database = await openBenchDatabase();
process.once('SIGINT', () => void database.close().finally(() => process.exit(1)));
try {
  const { db, url, server } = database;
  console.error(`Postgres ${server.version} (${server.source}, ${server.address})`);
  await migrate({ connectionString: url });
  const expired = Math.round(rows / 10);
  let started = performance.now();
  await fillLedger(db, SCHEMA, 1, rows - expired, 'live');
  await fillLedger(db, SCHEMA, rows - expired + 1, rows, 'expired');
  await vacuumAnalyze(db, SCHEMA);
  console.error(`filled ${rows} rows in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const timings = { exact: [] as number[], estimate: [] as number[], prefix: [] as number[] };
  let exact: Awaited<ReturnType<typeof ledgerStats>> | undefined;
  let estimate: typeof exact;
  for (let i = 0; i < repetitions; i++) {
    started = performance.now();
    exact = await ledgerStats(db, { top: 3 });
    timings.exact.push(performance.now() - started);
    started = performance.now();
    estimate = await ledgerStats(db, { estimate: true });
    timings.estimate.push(performance.now() - started);
    started = performance.now();
    await listEntries(db, { scopePrefix: 'merchant:99', limit: 100 });
    timings.prefix.push(performance.now() - started);
  }
  const median = (list: number[]) => [...list].sort((a, b) => a - b)[list.length >> 1] ?? 0;
  console.log(`| ${rows} rows, ${repetitions} runs each | median ms | min | max |`);
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, list] of Object.entries(timings)) {
    const label = name === 'prefix' ? 'listEntries(scopePrefix, limit 100)' : `ledgerStats ${name}`;
    console.log(
      `| ${label} | ${median(list).toFixed(0)} | ${Math.min(...list).toFixed(0)} | ${Math.max(...list).toFixed(0)} |`,
    );
  }
  console.log(`\nexact: ${JSON.stringify({ ...exact, topScopesByResponseBytes: undefined })}`);
  console.log(`estimate: ${JSON.stringify(estimate?.entries)}`);
} finally {
  await database.close();
}
