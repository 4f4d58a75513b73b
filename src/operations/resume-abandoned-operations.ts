import type { Kysely } from 'kysely';
import {
  IdempotencyConflictError,
  InvalidIdempotencyOptionsError,
  openStoredJson,
  type ResponseEncryption,
} from '../index.ts';
import type { Operation } from './define-operation.ts';
import { OperationLeaseLostError, OperationPendingError } from './operation-errors.ts';
import { parseResumeOptions } from './operation-options.ts';
import { findAbandonedOperations } from './operation-store.ts';
import { runOperation } from './run-operation.ts';

/** Options of {@link resumeAbandonedOperations}. */
export interface ResumeOptions {
  /** The operations this process can run, by name; others are left to processes that can. */
  // biome-ignore lint/suspicious/noExplicitAny: operations of any database and request type
  operations: readonly Operation<any, any, any>[];
  /** Operations taken per call, 1 to 10,000. Default 10. */
  batchSize?: number;
  /** Lease of each attempt. Default: runOperation's (30 s). */
  leaseMs?: number;
  /** Postgres schema of the ledger. Default `idempotency`. */
  schema?: string;
  /** Called with each error an attempt ended with, other than pending calls and lost races. */
  onError?: (error: unknown, operation: { name: string }) => void;
  /**
   * Stops the pass at its next operation once aborted (a shutdown): the operation running then
   * finishes, the others stay in progress for the next pass, counted in `found` only.
   */
  signal?: AbortSignal;
  /**
   * The operations' `encryption` (see `runOperation`): reads the requests they stored, and
   * encrypts what the resumed attempts store. An encrypted request it cannot read is an error
   * reported to `onError` (`ResponseDecryptionError`); the operation stays in progress.
   */
  encryption?: ResponseEncryption;
}

/** What one {@link resumeAbandonedOperations} pass did. */
export interface ResumeResult {
  /** Abandoned operations found. */
  found: number;
  /** Resumed and finished. */
  finished: number;
  /** Resumed, and left in progress again by a call that failed without a final answer. */
  pending: number;
  /**
   * Taken by another attempt first (a client's retry, another completer), or finished by one
   * before this pass came to it.
   */
  skipped: number;
  /** Ended with another error (reported to `onError`). */
  failed: number;
}

/**
 * The completer: resumes operations that were abandoned (their lease ran out, or a failed call
 * released it) without waiting for their clients to retry, with the request stored at their
 * start. One pass takes up to `batchSize`, one at a time; run it on a schedule, in one or several
 * processes (two that find the same operation cannot both run it: the lease decides).
 *
 * @example
 * ```ts
 * const result = await resumeAbandonedOperations(db, { operations: [createPayment] });
 * // { found: 2, finished: 2, pending: 0, skipped: 0, failed: 0 }
 * ```
 */
export async function resumeAbandonedOperations<DB>(
  db: Kysely<DB>,
  options: ResumeOptions,
): Promise<ResumeResult> {
  const { batchSize, leaseMs, schema, encryption } = parseResumeOptions(options);
  const byName = new Map(options.operations.map((operation) => [operation.name, operation]));
  if (byName.size === 0) {
    throw new InvalidIdempotencyOptionsError({
      message: 'resumeAbandonedOperations needs the operations it may run',
      issues: ['operations: at least one'],
    });
  }
  const found = await findAbandonedOperations(db, schema, [...byName.keys()], batchSize);
  const result: ResumeResult = {
    found: found.length,
    finished: 0,
    pending: 0,
    skipped: 0,
    failed: 0,
  };
  for (const abandoned of found) {
    if (options.signal?.aborted) break;
    const operation = byName.get(abandoned.name);
    if (!operation) continue;
    try {
      const { scope, key } = abandoned;
      const requestJson = openStoredJson(abandoned.requestJson, encryption, {
        kind: 'operation_request',
        schema,
        scope,
        key,
      });
      const { replayed } = await runOperation(db, operation, {
        scope,
        key,
        request: requestJson === null ? undefined : JSON.parse(requestJson),
        onConcurrent: 'reject',
        schema,
        ...(leaseMs === undefined ? {} : { leaseMs }),
        ...(encryption === undefined ? {} : { encryption }),
      });
      // A replay: another attempt finished it since the pass found it; this pass ran nothing.
      if (replayed) result.skipped += 1;
      else result.finished += 1;
    } catch (error) {
      if (error instanceof OperationPendingError) result.pending += 1;
      else if (
        error instanceof IdempotencyConflictError ||
        error instanceof OperationLeaseLostError
      ) {
        result.skipped += 1;
      } else {
        result.failed += 1;
        options.onError?.(error, { name: abandoned.name });
      }
    }
  }
  return result;
}
