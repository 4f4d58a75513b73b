// The operations section: the statements each path sends (recorded once, alone), then every
// variant at c=1 and c=16, interleaved round-robin within each repetition as the throughput
// section does, with the WAL each wrote. At the end, the database is asked how many operations
// finished under each name: exactly the ones the benchmark ran, or the run fails.
import { type Kysely, sql } from 'kysely';
import { type BenchDB, SCOPE } from '../business.ts';
import { recordStatements } from '../measure.ts';
import { REPLAY_KEYS } from '../variants.ts';
import { sampled, type WaitSampler } from '../waits.ts';
import { ownWalBytesSince, walBytesSince, walInspectAvailable, walPosition } from '../wal.ts';
import {
  executeOnce,
  OPERATION_NAMES,
  type OperationCell,
  type OperationRun,
  type OperationVariantId,
  operationCells,
  prepareReplays,
  replayOnce,
} from './operation-variants.ts';

export const OPERATION_CONCURRENCIES = [1, 16] as const;

export interface OperationsSettings {
  repetitions: number;
  warmupMs: number;
  cellMs: number;
}

export interface OperationCellResult {
  variant: OperationVariantId;
  concurrency: number;
  runs: OperationRun[];
}

/** A variant's finished operations: as counted by the benchmark, and by the database. */
export interface FinishedCheck {
  variant: OperationVariantId;
  executed: number;
  finished: number;
}

export interface OperationsResult {
  /**
   * The first words of each statement one call of the variant sends, in order, and the WAL it
   * wrote for this database (pg_walinspect; undefined without it).
   */
  paths: { variant: OperationVariantId; statements: string[]; walBytes?: number }[];
  cells: OperationCellResult[];
  checks: FinishedCheck[];
}

export async function runOperations(
  db: Kysely<BenchDB>,
  settings: OperationsSettings,
  sampler: WaitSampler,
  progress: (line: string) => void,
): Promise<OperationsResult> {
  // Installed first: its own WAL must not count against the first path.
  await walInspectAvailable(db);
  const replays = await prepareReplays(db);
  // The replay keys' own first executions finished operations too.
  const executed = new Map<OperationVariantId, number>([['step-call-finish', REPLAY_KEYS]]);
  const count = (variant: OperationVariantId) =>
    executed.set(variant, (executed.get(variant) ?? 0) + 1);

  // One call alone per path, so that the log holds its statements and nothing else's.
  const paths: OperationsResult['paths'] = [];
  const alone = async (variant: OperationVariantId, op: () => Promise<unknown>) => {
    const wal = await walPosition(db);
    const statements = await recordStatements(op);
    paths.push({ variant, statements, walBytes: await ownWalBytesSince(db, wal) });
  };
  const once = ['bare', 'with-idempotency', 'finish', 'step-finish', 'step-call-finish'] as const;
  for (const variant of once) {
    await alone(variant, () => executeOnce(db, variant));
    count(variant);
  }
  for (const variant of ['replay', 'with-idempotency-replay'] as const) {
    const [key] = variant === 'replay' ? replays.operations : replays.ledger;
    if (!key) throw new Error('no replay keys');
    await alone(variant, () => replayOnce(db, variant, key));
  }

  const cells = operationCells(db, OPERATION_CONCURRENCIES, replays, executed);
  progress(`operations warm-up: ${cells.length} cells x ${settings.warmupMs} ms`);
  for (const cell of cells) await cell.run(settings.warmupMs);

  const results = cells.map(
    (cell): OperationCellResult => ({
      variant: cell.variant,
      concurrency: cell.concurrency,
      runs: [],
    }),
  );
  for (let rep = 0; rep < settings.repetitions; rep++) {
    progress(
      `operations repetition ${rep + 1}/${settings.repetitions}: ${cells.length} cells x ${settings.cellMs} ms`,
    );
    // Start each repetition at another cell, so that no variant always follows the same one.
    for (let i = 0; i < cells.length; i++) {
      const index = (i + rep) % cells.length;
      const wal = await walPosition(db);
      const run = await sampled(sampler, () =>
        (cells[index] as OperationCell).run(settings.cellMs),
      );
      const ops = run.ops || 1;
      const own = await ownWalBytesSince(db, wal);
      (results[index] as OperationCellResult).runs.push({
        ...run,
        // This database's WAL when pg_walinspect tells it apart; else the server's.
        walBytesPerOp: own === undefined ? (await walBytesSince(db, wal)) / ops : own / ops,
        walScope: own === undefined ? 'server' : 'database',
      });
    }
  }
  return { paths, cells: results, checks: await countFinished(db, executed) };
}

/** Finished operations per name in the database, next to the executions the benchmark counted. */
async function countFinished(
  db: Kysely<BenchDB>,
  executed: Map<OperationVariantId, number>,
): Promise<FinishedCheck[]> {
  const { rows } = await sql<{ name: string; finished: string }>`
    select name, count(*) as finished from idempotency.operations
     where scope = ${SCOPE} and state = 'finished'
     group by name`.execute(db);
  return Object.entries(OPERATION_NAMES).map(([variant, name]) => ({
    variant: variant as OperationVariantId,
    executed: executed.get(variant as OperationVariantId) ?? 0,
    finished: Number(rows.find((row) => row.name === name)?.finished ?? 0),
  }));
}
