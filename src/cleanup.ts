import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { traceCleanup } from './cleanup-events.ts';
import { assertKysely } from './internal/assert-kysely.ts';
import { parseOptions } from './internal/parse-options.ts';
import { DEFAULT_SCHEMA, schemaNameSchema } from './internal/schema-name.ts';
import { deleteExpiredBatch } from './ledger.ts';

/** Default number of entries one cleanup statement deletes. */
export const DEFAULT_CLEANUP_BATCH_SIZE = 1000;

/** Options of {@link cleanupExpired}. */
export interface CleanupOptions {
  /**
   * Entries deleted per statement (one short transaction each). Smaller batches hold locks for
   * less time. Default 1000.
   */
  batchSize?: number;
  /**
   * Time to wait after each full batch before the next one. Default 0: delete as fast as the
   * database can. A pause leaves the database's CPU and WAL to live traffic while a large
   * backlog drains (see "Performance" in the README for what it buys); the run, and the
   * connection it holds when it has one to itself, lasts that much longer.
   *
   * @example
   * ```ts
   * await cleanupExpired(db, { pauseMs: 10 });
   * ```
   */
  pauseMs?: number;
  /** Postgres schema that holds the ledger. Default `idempotency`. */
  schema?: string;
  /**
   * Stops the cleanup between two batches: the batch in progress finishes (it is one statement),
   * no other starts, and the entries deleted so far are reported.
   *
   * @example
   * ```ts
   * const { deleted } = await cleanupExpired(db, { signal: AbortSignal.timeout(30_000) });
   * ```
   */
  signal?: AbortSignal;
  /**
   * Called after each batch with the entries deleted so far, for a progress display. It runs
   * between two batches, outside their transactions; an exception it throws ends the cleanup.
   *
   * @example
   * ```ts
   * await cleanupExpired(db, { onBatch: (deleted) => console.log(`${deleted} deleted`) });
   * ```
   */
  onBatch?: (deletedSoFar: number) => void;
}

/** What {@link cleanupExpired} did. */
export interface CleanupResult {
  /** Number of expired entries deleted. */
  deleted: number;
}

/** A pause in milliseconds, at most what a Node timer can wait. */
export const pauseMsSchema = z.int().nonnegative().max(2_147_483_647);

export const cleanupOptionsSchema = z.strictObject({
  batchSize: z.int().positive().max(1_000_000).default(DEFAULT_CLEANUP_BATCH_SIZE),
  pauseMs: pauseMsSchema.default(0),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
  // Duck-typed, like Node's own APIs: a signal from another realm or a polyfill works too.
  signal: z
    .custom<AbortSignal>(
      (value) =>
        typeof value === 'object' &&
        value !== null &&
        typeof (value as AbortSignal).aborted === 'boolean' &&
        typeof (value as AbortSignal).addEventListener === 'function',
      { message: 'Expected an AbortSignal' },
    )
    .optional(),
  onBatch: z.custom<(deletedSoFar: number) => void>((f) => typeof f === 'function').optional(),
});

/**
 * Deletes expired ledger entries, batch after batch, until none is left (or `signal` aborts).
 * Never deletes an entry that has not expired (by the database clock), and skips rows that a live
 * call has locked rather than waiting for them, so it is safe to run from many instances at once
 * and never stalls live `withIdempotency` calls. An expired key that has not been cleaned up yet
 * is already treated as new by `withIdempotency`: cleanup reclaims space, not correctness.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid batch size, pause, schema or signal.
 * @throws {LedgerSchemaError} when the ledger has not been migrated into `schema`.
 *
 * @example
 * ```ts
 * const { deleted } = await cleanupExpired(db, { batchSize: 5000 });
 *
 * // Beside live traffic: leave the database room, and give up after a minute.
 * await cleanupExpired(db, { pauseMs: 10, signal: AbortSignal.timeout(60_000) });
 * ```
 */
export async function cleanupExpired<DB>(
  db: Kysely<DB>,
  options: CleanupOptions = {},
): Promise<CleanupResult> {
  assertKysely(db, 'cleanupExpired');
  const { batchSize, pauseMs, schema, signal, onBatch } = parseOptions(
    cleanupOptionsSchema,
    options,
    'cleanupExpired',
  );
  return traceCleanup(
    async (progress) => {
      progress.outcome = 'aborted';
      while (!signal?.aborted) {
        const batch = await deleteExpiredBatch(db, schema, batchSize);
        progress.deleted += batch;
        progress.batches += 1;
        onBatch?.(progress.deleted);
        if (batch < batchSize) {
          progress.outcome = 'completed';
          break;
        }
        if (pauseMs > 0) await pause(pauseMs, signal);
      }
      return { deleted: progress.deleted };
    },
    { trigger: 'call', schema, batchSize },
  );
}

/** Waits `ms`, or less if `signal` aborts; the loop above then sees the abort and stops. */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, signal ? { signal } : {});
  } catch (error) {
    if (!signal?.aborted) throw error;
  }
}
