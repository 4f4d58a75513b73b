/**
 * The names of the attributes, spans and instruments `idempotency-ledger/otel` exports. There is
 * no OpenTelemetry semantic convention for idempotency: these follow the conventions' shape
 * (a dotted namespace, durations in seconds on histograms, `error.type` for failures).
 */

/** The instrumentation scope spans and metrics are reported under. */
export const INSTRUMENTATION_NAME = 'idempotency-ledger';

/** The span of one `withIdempotency` call. */
export const CALL_SPAN_NAME = 'withIdempotency';

/** The span of one `runOperation` call. */
export const RUN_OPERATION_SPAN_NAME = 'runOperation';

/** The span of one cleanup run or scheduled tick. */
export const CLEANUP_SPAN_NAME = 'idempotency.cleanup';

/** Attribute names, on spans and (where noted in the README) on metric points. */
export const ATTR = {
  scope: 'idempotency.scope',
  keyHash: 'idempotency.key_hash',
  key: 'idempotency.key',
  outcome: 'idempotency.outcome',
  replayed: 'idempotency.replayed',
  replayedFrom: 'idempotency.replayed_from',
  conflictReason: 'idempotency.conflict_reason',
  onConcurrent: 'idempotency.on_concurrent',
  transaction: 'idempotency.transaction',
  attempts: 'idempotency.attempts',
  phase: 'idempotency.phase',
  metInFlight: 'idempotency.met_in_flight',
  expiredEntry: 'idempotency.expired_entry',
  claimMs: 'idempotency.claim_ms',
  operation: 'idempotency.operation',
  operationResumed: 'idempotency.operation.resumed',
  operationFencingToken: 'idempotency.operation.fencing_token',
  operationHeldWaits: 'idempotency.operation.held_waits',
  leaseKind: 'idempotency.lease.kind',
  cleanupTrigger: 'idempotency.cleanup.trigger',
  cleanupOutcome: 'idempotency.cleanup.outcome',
  cleanupSchema: 'idempotency.cleanup.schema',
  cleanupDeleted: 'idempotency.cleanup.deleted',
  cleanupBatches: 'idempotency.cleanup.batches',
  errorType: 'error.type',
} as const;

/** Span events on a call's span. */
export const SPAN_EVENT = {
  /** A duplicate in flight decided the call (it waited for it, lost the race, or timed out). */
  metInFlight: 'idempotency.in_flight_duplicate',
  /** The call ran fn for a key whose earlier entry had expired, and took its row over. */
  expiredEntry: 'idempotency.expired_entry_taken_over',
} as const;

/** Instrument names. */
export const METRIC = {
  /** Histogram, seconds: every call, by outcome. Its count is the number of calls. */
  callDuration: 'idempotency.call.duration',
  /** Histogram, seconds: the claim, `fn` and the record of a call's last attempt, by phase. */
  phaseDuration: 'idempotency.phase.duration',
  /** Histogram, seconds: `runOperation` calls, by operation and outcome. */
  operationDuration: 'idempotency.operation.duration',
  /** Counter: changes to attempts' leases, by operation and kind. */
  operationLeaseEvents: 'idempotency.operation.lease.events',
  /** Gauge: operations in progress (with `observe`). */
  operationsInProgress: 'idempotency.operations.in_progress',
  /** Gauge: operations in progress that no attempt holds (with `observe`). */
  operationsAbandoned: 'idempotency.operations.abandoned',
  /** Gauge, seconds: the age of the oldest operation in progress (with `observe`). */
  operationsOldestAge: 'idempotency.operations.oldest_age',
  /** Counter, entries: expired entries cleanup deleted, by trigger and outcome. */
  cleanupDeleted: 'idempotency.cleanup.deleted',
  /** Histogram, seconds: cleanup runs and scheduled ticks, by trigger and outcome. */
  cleanupDuration: 'idempotency.cleanup.duration',
} as const;
