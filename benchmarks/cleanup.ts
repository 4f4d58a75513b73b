// cleanupExpired: how fast it deletes expired rows (default settings), alone and under live
// traffic, and what it does to the latency of that traffic (first executions at c=4), measured
// before, during and after it in the same run; under traffic once more with a pause between
// batches, to show what pacing buys.
import { randomInt, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Kysely, sql } from 'kysely';
import { type BenchDB, insertCharge, newChargeRequest } from './business.ts';
import { filledScope, fillLedger, vacuumAnalyze } from './fill.ts';
import { cleanupExpired, migrate, withIdempotency } from './library.ts';
import { type CellRun, median, runWhile, runWorkers } from './measure.ts';
import { sampled, type WaitProfile, type WaitSampler } from './waits.ts';
import { walBytesSince, walPosition } from './wal.ts';

const SCHEMA = 'bench_cleanup';
export const LIVE_CONCURRENCY = 4;

export interface CleanupSettings {
  rows: number;
  /** Live traffic without cleanup, measured once before and once after it. */
  baselineMs: number;
  /** The options of the paced pass under traffic (the first pass uses the defaults). */
  paced: { batchSize?: number; pauseMs?: number };
}

export type LiveRun = CellRun & { waits: WaitProfile };

export interface CleanupPass {
  deleted: number;
  ms: number;
  rowsPerSec: number;
  /** WAL written while the pass ran (live traffic's included, when there is some), per row deleted. */
  walBytesPerRow: number;
}

/** One cleanup pass under live traffic, and that traffic's latency while it ran. */
export interface TrafficPass {
  /** What cleanupExpired was given besides the schema: {} for the defaults. */
  options: CleanupSettings['paced'];
  pass: CleanupPass;
  during: LiveRun;
  /** during / median(traffic without cleanup just before, just after). */
  p50Ratio: number;
  p99Ratio: number;
}

export interface CleanupResult {
  rows: number;
  /** The plan of delete_expired's inner SELECT on the filled, analyzed table. */
  plan: string[];
  alone: CleanupPass;
  live: {
    concurrency: number;
    /** Live traffic without cleanup: before each pass under traffic, and after the last. */
    without: LiveRun[];
  };
  /** Under traffic with the defaults, then with `paced`. */
  underTraffic: [TrafficPass, TrafficPass];
}

export async function measureCleanup(
  db: Kysely<BenchDB>,
  url: string,
  settings: CleanupSettings,
  sampler: WaitSampler,
  progress: (line: string) => void,
): Promise<CleanupResult> {
  await migrate({ connectionString: url, schema: SCHEMA });
  const { rows } = settings;

  await fillLedger(db, SCHEMA, 1, rows, 'expired');
  await vacuumAnalyze(db, SCHEMA);
  const plan = await explainBatch(db);
  await checkpoint(db);
  const alone = await timeCleanup(db, {});
  if (alone.deleted !== rows) throw new Error(`cleanup deleted ${alone.deleted} of ${rows} rows`);
  progress(`cleanup alone: ${fmt(alone.rowsPerSec)} rows/s`);

  const live = () => {
    const request = newChargeRequest();
    const scope = filledScope(randomInt(1000));
    return withIdempotency(db, { scope, key: randomUUID(), request, schema: SCHEMA }, (trx) =>
      insertCharge(trx, request),
    );
  };
  const baseline = () =>
    sampled(sampler, () => runWorkers(LIVE_CONCURRENCY, settings.baselineMs, live));
  // Each pass gets new expired rows (the dead ones of the pass before vacuumed away), then live
  // traffic is measured without cleanup and with it; once more without it after the last pass.
  // A pass is compared with the traffic just before it and the traffic just after it.
  const passes: { options: CleanupSettings['paced']; pass: CleanupPass; during: LiveRun }[] = [];
  const without: LiveRun[] = [];
  for (const [i, options] of [{}, settings.paced].entries()) {
    await vacuumAnalyze(db, SCHEMA);
    await fillLedger(db, SCHEMA, (i + 1) * rows + 1, (i + 2) * rows, 'expired');
    await vacuumAnalyze(db, SCHEMA);
    await checkpoint(db);
    without.push(await baseline());
    let cleaning = true;
    // Settled into a value at once, so that a failure is not an unhandled rejection meanwhile.
    const outcome = timeCleanup(db, options).then(
      (pass) => ({ pass }),
      (error: unknown) => ({ error }),
    );
    void outcome.finally(() => {
      cleaning = false;
    });
    const during = await sampled(sampler, () => runWhile(LIVE_CONCURRENCY, () => cleaning, live));
    const settled = await outcome;
    if ('error' in settled) throw settled.error;
    passes.push({ options, pass: settled.pass, during });
    progress(
      `cleanup under traffic ${JSON.stringify(options)}: ${fmt(settled.pass.rowsPerSec)} rows/s`,
    );
  }
  await vacuumAnalyze(db, SCHEMA);
  without.push(await baseline());

  const underTraffic = passes.map((p, i): TrafficPass => {
    const around = [without[i], without[i + 1]] as [LiveRun, LiveRun];
    const ratio = (field: 'p50' | 'p99') =>
      p.during.latency[field] / median(around.map((run) => run.latency[field]));
    return { ...p, p50Ratio: ratio('p50'), p99Ratio: ratio('p99') };
  }) as [TrafficPass, TrafficPass];
  return { rows, plan, alone, live: { concurrency: LIVE_CONCURRENCY, without }, underTraffic };
}

async function timeCleanup(
  db: Kysely<BenchDB>,
  options: CleanupSettings['paced'],
): Promise<CleanupPass> {
  const walBefore = await walPosition(db);
  const started = performance.now();
  const { deleted } = await cleanupExpired(db, { ...options, schema: SCHEMA });
  if (deleted === 0) throw new Error('cleanup found nothing to delete');
  const ms = performance.now() - started;
  const walBytes = await walBytesSince(db, walBefore);
  return { deleted, ms, rowsPerSec: deleted / (ms / 1000), walBytesPerRow: walBytes / deleted };
}

/**
 * Starts each pass right after a checkpoint: the first change to each page after a checkpoint
 * writes the whole page to the WAL, and a checkpoint that the fill's WAL happens to trigger in the
 * middle of one pass and not the other would decide the comparison. Needs superuser (or
 * pg_checkpoint); without it the passes just start wherever the server is.
 */
async function checkpoint(db: Kysely<BenchDB>): Promise<void> {
  await sql`checkpoint`.execute(db).catch(() => undefined);
}

/** The plan Postgres picks for one batch's SELECT (delete_expired runs the same query). */
async function explainBatch(db: Kysely<BenchDB>): Promise<string[]> {
  const { rows } = await sql<{ 'QUERY PLAN': string }>`
    explain select ctid from ${sql.id(SCHEMA, 'ledger')}
     where expires_at <= statement_timestamp()
     limit 1000 for update skip locked`.execute(db);
  return rows.map((row) => row['QUERY PLAN']);
}

function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
