import type { Kysely } from 'kysely';
import { DEFAULT_SCHEMA } from '../index.ts';
import { listInProgress, type OperationSummary, revokeLease } from './operation-store.ts';

export type { OperationSummary };

/**
 * Operations in progress, oldest first, with their holder's lease and the steps they recorded:
 * for an operator looking for stuck ones (an operation whose lease keeps running out, and whose
 * attempts grow, is failing on every resume). The result includes keys: keep it out of logs.
 *
 * @example
 * ```ts
 * const stuck = (await listOperationsInProgress(db)).filter((op) => op.attempts > 5);
 * ```
 */
export function listOperationsInProgress<DB>(
  db: Kysely<DB>,
  options: { limit?: number; schema?: string } = {},
): Promise<OperationSummary[]> {
  return listInProgress(db, options.schema ?? DEFAULT_SCHEMA, options.limit ?? 100);
}

/**
 * Releases an operation in progress: takes its lease away and raises its fencing token, so that
 * the attempt holding it (if any still runs) can commit nothing more, and the next client retry
 * or completer pass resumes it at once. Returns false when no such operation is in progress.
 *
 * @example
 * ```ts
 * await releaseOperation(db, { scope: 'merchant:42:create-payment', key: 'order-7' });
 * ```
 */
export function releaseOperation<DB>(
  db: Kysely<DB>,
  operation: { scope: string; key: string; schema?: string },
): Promise<boolean> {
  const { scope, key } = operation;
  return revokeLease(db, { schema: operation.schema ?? DEFAULT_SCHEMA, scope, key });
}
