import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { z } from 'zod';
import {
  type CleanupOptions,
  type CleanupResult,
  cleanupExpired,
  cleanupOptionsSchema,
  pauseMsSchema,
} from './cleanup.ts';
import { cleanupLockKey } from './internal/advisory-locks.ts';
import { assertKysely } from './internal/assert-kysely.ts';
import { parseOptions } from './internal/parse-options.ts';

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
  /** Entries deleted per statement. Default 1000. */
  batchSize?: number;
  /**
   * Time to wait after each full batch; see {@link CleanupOptions.pauseMs}. Default 10 ms
   * ({@link DEFAULT_SCHEDULED_CLEANUP_PAUSE_MS}); 0 deletes at full speed. A tick
   * holds one connection of `db`'s pool (and the cleanup lock) from its first batch to its
   * last, pauses included: with a pause, a large backlog keeps that connection longer.
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
   * Called after each tick: `ran` is false when another instance held the cleanup lock, so this
   * one skipped the tick. Useful for metrics.
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

// The schedule owns the signal: stop() aborts it.
const scheduleOptionsSchema = cleanupOptionsSchema.omit({ signal: true }).extend({
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
 * Runs {@link cleanupExpired} now and then every `intervalMs`, in this process. Across a fleet,
 * only the instance that wins a Postgres advisory lock works a given tick; the others skip it.
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

/** Runs one tick; undefined when the schedule was stopped before the tick took the lock. */
async function runTick<DB>(
  db: Kysely<DB>,
  options: CleanupOptions & { schema: string; signal: AbortSignal },
): Promise<CleanupTick | undefined> {
  const { schema, signal } = options;
  // A session-level lock on one pooled connection, held for the whole tick and released before
  // the connection goes back to the pool. If this process dies mid-tick, Postgres drops the
  // connection and the lock with it, and another instance takes the next tick.
  return db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`
      select pg_try_advisory_lock(${cleanupLockKey(schema)}) as locked`.execute(conn);
    if (!rows[0]?.locked) return { ran: false, deleted: 0 };
    try {
      if (signal.aborted) return undefined;
      const { deleted } = await cleanupExpired(conn, options);
      return { ran: true, deleted };
    } finally {
      await sql`select pg_advisory_unlock(${cleanupLockKey(schema)})`.execute(conn);
    }
  });
}

function toWarning(error: unknown): Error {
  const warning = new Error(`idempotency-ledger cleanup failed: ${String(error)}`, {
    cause: error,
  });
  warning.name = 'IdempotencyCleanupWarning';
  return warning;
}
