import type { Kysely } from 'kysely';
import { z } from 'zod';
import { deleteExpiredBatch } from './ledger.ts';
import { DEFAULT_SCHEMA, parseOptions, schemaNameSchema } from './options.ts';

/** Default number of entries one cleanup statement deletes. */
export const DEFAULT_CLEANUP_BATCH_SIZE = 1000;

/** Options of {@link cleanupExpired}. */
export interface CleanupOptions {
  /**
   * Entries deleted per statement (one short transaction each). Smaller batches hold locks for
   * less time. Default 1000.
   */
  batchSize?: number;
  /** Postgres schema that holds the ledger. Default `idempotency`. */
  schema?: string;
}

/** What {@link cleanupExpired} did. */
export interface CleanupResult {
  /** Number of expired entries deleted. */
  deleted: number;
}

export const cleanupOptionsSchema = z.strictObject({
  batchSize: z.int().positive().max(1_000_000).default(DEFAULT_CLEANUP_BATCH_SIZE),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
});

/**
 * Deletes expired ledger entries, batch after batch, until none is left. Never deletes an entry
 * that has not expired (by the database clock), and skips rows that a live call has locked rather
 * than waiting for them, so it is safe to run from many instances at once and never stalls live
 * `withIdempotency` calls. An expired key that has not been cleaned up yet is already treated as
 * new by `withIdempotency`: cleanup reclaims space, not correctness.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid batch size or schema.
 * @throws {LedgerSchemaError} when the ledger has not been migrated into `schema`.
 *
 * @example
 * ```ts
 * const { deleted } = await cleanupExpired(db, { batchSize: 5000 });
 * ```
 */
export async function cleanupExpired<DB>(
  db: Kysely<DB>,
  options: CleanupOptions = {},
): Promise<CleanupResult> {
  const { batchSize, schema } = parseOptions(cleanupOptionsSchema, options, 'cleanupExpired');
  let deleted = 0;
  for (;;) {
    const batch = await deleteExpiredBatch(db, schema, batchSize);
    deleted += batch;
    if (batch < batchSize) return { deleted };
  }
}
