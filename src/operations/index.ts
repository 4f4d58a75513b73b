/**
 * `idempotency-ledger/operations`: work with effects outside the database (a payment provider,
 * an email) as a durable sequence of steps, with a lease, fencing tokens, recovery points and
 * downstream keys. See {@link runOperation} and {@link defineOperation}.
 *
 * @module
 */
export {
  type ClassifyFailure,
  defineOperation,
  isOperation,
  type Operation,
  type OperationContext,
} from './define-operation.ts';
export { downstreamKey } from './downstream-key.ts';
export {
  listOperationsInProgress,
  type OperationSummary,
  releaseOperation,
} from './operation-admin.ts';
export {
  FinalResponse,
  OperationLeaseLostError,
  OperationPendingError,
  type PendingReason,
} from './operation-errors.ts';
export {
  OPERATION_LEASE_CHANNEL,
  type OperationLeaseEvent,
  type OperationOutcome,
  RUN_OPERATION_CHANNEL,
  type RunOperationEvent,
} from './operation-events.ts';
export { DEFAULT_LEASE_MS } from './operation-options.ts';
export {
  type ResumeOptions,
  type ResumeResult,
  resumeAbandonedOperations,
} from './resume-abandoned-operations.ts';
export {
  type OperationResult,
  type RunOperationOptions,
  runOperation,
} from './run-operation.ts';
