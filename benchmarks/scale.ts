// Claim (first execution) and replay latency on a small and a large ledger, measured
// alternately in the same run so that both sizes see the same machine.
import { randomInt, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { type BenchDB, insertCharge, newChargeRequest } from './business.ts';
import { FILL_REQUEST, filledKey, filledScope, fillLedger, vacuumAnalyze } from './fill.ts';
import { migrate, withIdempotency } from './library.ts';
import { type CellRun, median, runCount } from './measure.ts';
import { type RelationSizes, relationSizes } from './storage.ts';

export interface ScaleSettings {
  sizes: [number, number];
  opsPerCell: number;
  repetitions: number;
}

export interface ScalePoint {
  rows: number;
  schema: string;
  fillMs: number;
  sizes: RelationSizes;
  claim: CellRun[];
  replay: CellRun[];
}

export interface ScaleResult {
  opsPerCell: number;
  points: [ScalePoint, ScalePoint];
  /** large / small, on the medians over repetitions. */
  ratios: { claimP50: number; claimP99: number; replayP50: number; replayP99: number };
}

const WARMUP_OPS = 100;

export async function measureScale(
  db: Kysely<BenchDB>,
  url: string,
  settings: ScaleSettings,
  progress: (line: string) => void,
): Promise<ScaleResult> {
  const points: ScalePoint[] = [];
  for (const rows of settings.sizes) {
    const schema = `bench_scale_${rows}`;
    await migrate({ connectionString: url, schema });
    const started = performance.now();
    await fillLedger(db, schema, 1, rows, 'live');
    await vacuumAnalyze(db, schema);
    const fillMs = performance.now() - started;
    progress(
      `filled ${rows.toLocaleString('en-US')} ledger rows in ${(fillMs / 1000).toFixed(1)} s`,
    );
    points.push({
      rows,
      schema,
      fillMs,
      sizes: await relationSizes(db, schema),
      claim: [],
      replay: [],
    });
  }

  const claim = (point: ScalePoint) => () => {
    const request = newChargeRequest();
    const scope = filledScope(randomInt(1000));
    return withIdempotency(db, { scope, key: randomUUID(), request, schema: point.schema }, (trx) =>
      insertCharge(trx, request),
    );
  };
  const replay = (point: ScalePoint) => async () => {
    const i = randomInt(1, point.rows + 1);
    const options = { scope: filledScope(i), key: filledKey(i), request: FILL_REQUEST };
    // Executing would be a bug (the row is there and live): fail the run rather than measure it.
    await withIdempotency(db, { ...options, schema: point.schema }, () =>
      Promise.reject(new Error(`filled row ${i} executed instead of replaying`)),
    );
  };

  for (const point of points) {
    await runCount(1, WARMUP_OPS, claim(point));
    await runCount(1, WARMUP_OPS, replay(point));
  }
  for (let rep = 0; rep < settings.repetitions; rep++) {
    progress(`scale repetition ${rep + 1}/${settings.repetitions}`);
    for (const point of points) {
      point.claim.push(await runCount(1, settings.opsPerCell, claim(point)));
      point.replay.push(await runCount(1, settings.opsPerCell, replay(point)));
    }
  }

  const [small, large] = points as [ScalePoint, ScalePoint];
  const ratio = (pick: (p: ScalePoint) => CellRun[], field: 'p50' | 'p99') =>
    median(pick(large).map((run) => run.latency[field])) /
    median(pick(small).map((run) => run.latency[field]));
  return {
    opsPerCell: settings.opsPerCell,
    points: [small, large],
    ratios: {
      claimP50: ratio((p) => p.claim, 'p50'),
      claimP99: ratio((p) => p.claim, 'p99'),
      replayP50: ratio((p) => p.replay, 'p50'),
      replayP99: ratio((p) => p.replay, 'p99'),
    },
  };
}
