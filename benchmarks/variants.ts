// The PostgreSQL variants: the bare business transaction, and withIdempotency around it (first
// execution, replay with and without the in-process cache, and a hot key hit by concurrent
// duplicates).
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Kysely, sql } from 'kysely';
import {
  type BenchDB,
  type ChargeRequest,
  createCharge,
  insertCharge,
  newChargeRequest,
  SCOPE,
} from './business.ts';
import { ReplayCache, withIdempotency } from './library.ts';
import { type CellRun, measure, runWorkers, timed } from './measure.ts';
import type { WaitProfile } from './waits.ts';

export type VariantId =
  | 'bare'
  | 'first'
  | 'first-optimistic'
  | 'replay'
  | 'replay-cached'
  | 'hot-key'
  | 'hot-key-optimistic'
  | 'powertools-first'
  | 'powertools-replay';

export interface HotKeyStats {
  /** Keys hit, each by `duplicates` concurrent calls. */
  batches: number;
  duplicates: number;
  /** Calls that returned `replayed: false`: must equal `batches`. */
  executed: number;
  /** Charges rows written for those keys, counted in the database: must equal `batches`. */
  chargesWritten: number;
}

export interface ThroughputRun extends CellRun {
  /** WAL the server wrote during the run, per operation. */
  walBytesPerOp?: number;
  hotKey?: HotKeyStats;
  /** Average Postgres sessions per state during the run; see waits.ts. */
  waits?: WaitProfile;
}

/** One variant at one concurrency: a cell of the throughput table. */
export interface Cell {
  variant: VariantId;
  concurrency: number;
  run(durationMs: number): Promise<ThroughputRun>;
}

/** How many distinct keys the replay variants cycle through. */
export const REPLAY_KEYS = 16;

type Db = Kysely<BenchDB>;

type OnConcurrent = 'wait' | 'optimistic';

function idempotentCharge(
  db: Db,
  key: string,
  request: ChargeRequest,
  {
    replayCache,
    onConcurrent = 'wait',
  }: {
    replayCache?: InstanceType<typeof ReplayCache> | undefined;
    onConcurrent?: OnConcurrent;
  } = {},
) {
  return withIdempotency(db, { scope: SCOPE, key, request, replayCache, onConcurrent }, (trx) =>
    insertCharge(trx, request),
  );
}

export function bareCell(db: Db, concurrency: number): Cell {
  return {
    variant: 'bare',
    concurrency,
    run: (durationMs) =>
      runWorkers(concurrency, durationMs, () => createCharge(db, newChargeRequest())),
  };
}

/** Fresh keys; with `'optimistic'`, no claim before fn and one INSERT of the entry last. */
export function firstExecutionCell(
  db: Db,
  concurrency: number,
  onConcurrent: OnConcurrent = 'wait',
): Cell {
  return {
    variant: onConcurrent === 'optimistic' ? 'first-optimistic' : 'first',
    concurrency,
    run: (durationMs) =>
      runWorkers(concurrency, durationMs, async () => {
        const request = newChargeRequest();
        const { replayed } = await idempotentCharge(db, randomUUID(), request, { onConcurrent });
        if (replayed) throw new Error('a fresh key replayed');
      }),
  };
}

/** Executes REPLAY_KEYS keys once; the replay cells then cycle through them. */
export async function prepareReplayKeys(
  db: Db,
): Promise<{ key: string; request: ChargeRequest }[]> {
  const keys = Array.from({ length: REPLAY_KEYS }, () => ({
    key: randomUUID(),
    request: newChargeRequest(),
  }));
  for (const { key, request } of keys) await idempotentCharge(db, key, request);
  return keys;
}

/** Replays of completed keys; with `cached`, through an in-process ReplayCache. */
export function replayCell(
  db: Db,
  concurrency: number,
  keys: { key: string; request: ChargeRequest }[],
  cached = false,
): Cell {
  let next = 0;
  const replayCache = cached ? new ReplayCache() : undefined;
  return {
    variant: cached ? 'replay-cached' : 'replay',
    concurrency,
    run: (durationMs) =>
      runWorkers(concurrency, durationMs, async () => {
        const { key, request } = keys[next++ % keys.length] as (typeof keys)[number];
        const { replayed } = await idempotentCharge(db, key, request, { replayCache });
        if (!replayed) throw new Error('a completed key executed again');
      }),
  };
}

/**
 * Fresh keys, one after another, each hit by `duplicates` concurrent calls at once: one executes,
 * the others wait for its transaction on the primary key and replay (with `'optimistic'`, they
 * run fn too, and all but the first to commit roll back). Throughput counts every completed call.
 */
export function hotKeyCell(db: Db, duplicates: number, onConcurrent: OnConcurrent = 'wait'): Cell {
  return {
    variant: onConcurrent === 'optimistic' ? 'hot-key-optimistic' : 'hot-key',
    concurrency: duplicates,
    async run(durationMs) {
      const customers: string[] = [];
      let executed = 0;
      const run = await measure(async (latencies) => {
        const deadline = performance.now() + durationMs;
        while (performance.now() < deadline) {
          const key = randomUUID();
          const request = newChargeRequest();
          customers.push(request.customer);
          const results = await Promise.all(
            Array.from({ length: duplicates }, () =>
              timed(latencies, () => idempotentCharge(db, key, request, { onConcurrent })),
            ),
          );
          executed += results.filter((result) => !result.replayed).length;
        }
      });
      // Counted outside the timed stretch: the database's own word on how many executions
      // committed (each batch's request has its own customer).
      const { rows } = await sql<{ count: string }>`
        select count(*) as count from charges where customer = any(${customers})`.execute(db);
      const chargesWritten = Number(rows[0]?.count);
      return {
        ...run,
        hotKey: { batches: customers.length, duplicates, executed, chargesWritten },
      };
    },
  };
}
