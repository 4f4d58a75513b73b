import { setTimeout as sleep } from 'node:timers/promises';
import { type Kysely, sql } from 'kysely';
import { z } from 'zod';
import { type CleanupResult, cleanupOptionsSchema, pauseMsSchema } from './cleanup.ts';
import { traceCleanup } from './cleanup-events.ts';
import { cleanupLockKey } from './internal/advisory-locks.ts';
import { assertKysely } from './internal/assert-kysely.ts';
import { parseOptions } from './internal/parse-options.ts';
import { deleteExpiredBatch } from './ledger.ts';

/** Default time between two cleanup ticks: one minute. */
export const DEFAULT_CLEANUP_INTERVAL_MS = 60_000;

/**
 * Default pause after each full batch of a scheduled cleanup. A schedule runs beside live traffic:
 * at full speed a large backlog takes a database core while it drains, and the latency of live
 * calls shows it; with this pause it drains about a third as fast and they barely notice (see
 * "Performance" in the README).
 */
export const DEFAULT_SCHEDULED_CLEANUP_PAUSE_MS = 10;

/** Options of {@link scheduleCleanup}. */
export interface ScheduleCleanupOptions {
  /** Time from the end of one tick to the start of the next. Default 60 s. */
  intervalMs?: number;
  /** Entries deleted per batch (one short transaction each). Default 1000. */
  batchSize?: number;
  /**
   * Time to wait after each full batch, as `pauseMs` of `cleanupExpired`. Default 10 ms
   * ({@link DEFAULT_SCHEDULED_CLEANUP_PAUSE_MS}); 0 deletes at full speed. A batch holds one
   * connection of `db`'s pool, and the cleanup lock, for its own transaction only: a pause holds
   * neither.
   */
  pauseMs?: number;
  /** Postgres schema that holds the ledger. Default `idempotency`. */
  schema?: string;
  /**
   * Receives every error of a tick (the next tick runs as planned). Default: a process warning
   * (`process.emitWarning`), never an unhandled rejection.
   */
  onError?: (error: unknown) => void | Promise<void>;
  /**
   * Called after each tick: `ran` is false when another instance held the cleanup lock at the
   * tick's first batch, so this one skipped the tick. Useful for metrics.
   */
  onTick?: (tick: CleanupTick) => void | Promise<void>;
}

/** The outcome of one tick of {@link scheduleCleanup}. */
export interface CleanupTick extends CleanupResult {
  /** False when another instance was cleaning up and this one skipped the tick. */
  ran: boolean;
}

/** A running cleanup schedule. */
export interface CleanupSchedule {
  /**
   * Stops the schedule. A tick in progress stops after the batch it is running; resolves once
   * that batch has committed and the tick has ended.
   */
  stop(): Promise<void>;
}

// The schedule owns the signal: stop() aborts it. Its ticks report through onTick, not onBatch.
const scheduleOptionsSchema = cleanupOptionsSchema.omit({ signal: true, onBatch: true }).extend({
  pauseMs: pauseMsSchema.default(DEFAULT_SCHEDULED_CLEANUP_PAUSE_MS),
  intervalMs: z.int().positive().max(2_147_483_647).default(DEFAULT_CLEANUP_INTERVAL_MS),
  onError: z
    .custom<(error: unknown) => void | Promise<void>>((f) => typeof f === 'function')
    .optional(),
  onTick: z
    .custom<(tick: CleanupTick) => void | Promise<void>>((f) => typeof f === 'function')
    .optional(),
});

/**
 * Deletes expired entries as `cleanupExpired` does, now and then every `intervalMs`, in this
 * process. Across a fleet, one instance works at a time: each batch is a transaction that first
 * takes a transaction-level Postgres advisory lock. An instance whose tick finds the lock taken
 * skips that tick; one that finds it taken between two batches ends its tick there, and leaves the
 * rest to the instance that holds it. No lock or setting outlives a batch's transaction, so the
 * schedule works through a transaction pooler (PgBouncer in transaction mode) as well as directly.
 * The process stays alive while the schedule runs: call `stop()` on shutdown.
 *
 * @example
 * ```ts
 * const cleanup = scheduleCleanup(db, {
 *   intervalMs: 5 * 60_000,
 *   onError: (error) => logger.warn({ error }, 'idempotency cleanup failed'),
 * });
 * process.once('SIGTERM', () => void cleanup.stop());
 * ```
 */
export function scheduleCleanup<DB>(
  db: Kysely<DB>,
  options: ScheduleCleanupOptions = {},
): CleanupSchedule {
  assertKysely(db, 'scheduleCleanup');
  const { intervalMs, onError, onTick, ...cleanupOptions } = parseOptions(
    scheduleOptionsSchema,
    options,
    'scheduleCleanup',
  );
  const report = onError ?? ((error: unknown) => process.emitWarning(toWarning(error)));
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const stopping = new AbortController();

  const tick = async () => {
    try {
      const result = await runTick(db, { ...cleanupOptions, signal: stopping.signal });
      // Awaited, so that an async onTick that rejects lands in onError too. A tick that stop()
      // cut off before it began is not one.
      if (result) await onTick?.(result);
    } catch (error) {
      try {
        await report(error);
      } catch {
        // An onError that throws or rejects must not become an unhandled rejection either.
      }
    }
    if (!stopping.signal.aborted) timer = setTimeout(start, intervalMs);
  };
  const start = () => {
    running = tick();
  };
  start();

  return {
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}

/**
 * Runs one tick: batches of {@link deleteExpiredBatch}, each under the cleanup lock, until none is
 * full. Undefined when the schedule was stopped before the tick's first batch.
 */
async function runTick<DB>(
  db: Kysely<DB>,
  options: { schema: string; batchSize: number; pauseMs: number; signal: AbortSignal },
): Promise<CleanupTick | undefined> {
  const { schema, batchSize, pauseMs, signal } = options;
  return traceCleanup(
    async (progress) => {
      for (;;) {
        const batch = await deleteLockedBatch(db, options);
        const { batches, deleted } = progress;
        // Busy: another instance holds the lock. At the first batch this instance skips the
        // tick; later, the other one took over between two batches, and finishes the work.
        if (batch === 'busy') {
          progress.outcome = batches > 0 ? 'completed' : 'skipped';
          return { ran: batches > 0, deleted };
        }
        if (batch === 'stopped') {
          progress.outcome = 'aborted';
          return batches > 0 ? { ran: true, deleted } : undefined;
        }
        progress.deleted += batch;
        progress.batches += 1;
        if (batch < batchSize) {
          progress.outcome = 'completed';
          return { ran: true, deleted: progress.deleted };
        }
        if (pauseMs > 0) await pause(pauseMs, signal);
      }
    },
    { trigger: 'schedule', schema, batchSize },
  );
}

/**
 * One batch in one transaction that first takes the cleanup lock: a transaction-level lock ends
 * with the transaction on the server connection that ran it, so no state outlives the batch even
 * through a transaction pooler, and between batches the tick holds neither a connection nor the
 * lock. If this process dies mid-batch, Postgres rolls the batch back and the lock goes with it.
 */
async function deleteLockedBatch<DB>(
  db: Kysely<DB>,
  options: { schema: string; batchSize: number; signal: AbortSignal },
): Promise<number | 'busy' | 'stopped'> {
  const { schema, batchSize, signal } = options;
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ locked: boolean }>`
      select pg_try_advisory_xact_lock(${cleanupLockKey(schema)}) as locked`.execute(trx);
    if (!rows[0]?.locked) return 'busy';
    if (signal.aborted) return 'stopped';
    return deleteExpiredBatch(trx, schema, batchSize);
  });
}

/** Waits `ms`, or less if `signal` aborts; the next batch then sees the abort and stops. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

function toWarning(error: unknown): Error {
  const warning = new Error(`idempotency-ledger cleanup failed: ${String(error)}`, {
    cause: error,
  });
  warning.name = 'IdempotencyCleanupWarning';
  return warning;
}
