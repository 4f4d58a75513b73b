// The throughput matrix: every variant at c=1 and c=16, interleaved round-robin within each
// repetition so that machine noise (another process, a checkpoint, autovacuum) hits all alike.
import type { Kysely } from 'kysely';
import type { BenchDB } from './business.ts';
import type { RedisConnection } from './powertools.ts';
import { powertoolsCells } from './powertools.ts';
import {
  bareCell,
  type Cell,
  firstExecutionCell,
  hotKeyCell,
  prepareReplayKeys,
  replayCell,
  type ThroughputRun,
  type VariantId,
} from './variants.ts';
import { sampled, type WaitSampler } from './waits.ts';
import { walBytesSince, walPosition } from './wal.ts';

export const CONCURRENCIES = [1, 16] as const;
/** Concurrent duplicates per hot key. */
export const HOT_KEY_DUPLICATES = 16;

export interface ThroughputSettings {
  repetitions: number;
  warmupMs: number;
  cellMs: number;
}

export interface CellResult {
  variant: VariantId;
  concurrency: number;
  /** One entry per repetition, in order. */
  runs: ThroughputRun[];
}

export async function runThroughput(
  db: Kysely<BenchDB>,
  redis: RedisConnection | undefined,
  keyPrefix: string,
  settings: ThroughputSettings,
  sampler: WaitSampler,
  progress: (line: string) => void,
): Promise<CellResult[]> {
  const replayKeys = await prepareReplayKeys(db);
  const powertools = redis && powertoolsCells(db, redis, keyPrefix);
  await powertools?.prepareReplayKeys();

  const cells: Cell[] = [];
  for (const c of CONCURRENCIES) {
    cells.push(
      bareCell(db, c),
      firstExecutionCell(db, c),
      firstExecutionCell(db, c, 'optimistic'),
      replayCell(db, c, replayKeys),
      replayCell(db, c, replayKeys, true),
    );
    if (powertools) cells.push(powertools.first(c), powertools.replay(c));
  }
  cells.push(hotKeyCell(db, HOT_KEY_DUPLICATES), hotKeyCell(db, HOT_KEY_DUPLICATES, 'optimistic'));

  progress(`warm-up: ${cells.length} cells x ${settings.warmupMs} ms`);
  for (const cell of cells) await cell.run(settings.warmupMs);

  const results = cells.map(
    (cell): CellResult => ({
      variant: cell.variant,
      concurrency: cell.concurrency,
      runs: [],
    }),
  );
  for (let rep = 0; rep < settings.repetitions; rep++) {
    progress(
      `repetition ${rep + 1}/${settings.repetitions}: ${cells.length} cells x ${settings.cellMs} ms`,
    );
    // Start each repetition at another cell, so that no variant always follows the same one.
    for (let i = 0; i < cells.length; i++) {
      const index = (i + rep) % cells.length;
      const wal = await walPosition(db);
      const run = await sampled(sampler, () => (cells[index] as Cell).run(settings.cellMs));
      const walBytesPerOp = (await walBytesSince(db, wal)) / (run.ops || 1);
      (results[index] as CellResult).runs.push({ ...run, walBytesPerOp });
    }
  }
  return results;
}
