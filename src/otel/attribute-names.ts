/**
 * The names of the attributes, spans and instruments `idempotency-ledger/otel` exports. There is
 * no OpenTelemetry semantic convention for idempotency: these follow the conventions' shape
 * (a dotted namespace, durations in seconds on histograms, `error.type` for failures).
 */

/** The instrumentation scope spans and metrics are reported under. */
export const INSTRUMENTATION_NAME = 'idempotency-ledger';

/** The span of one `withIdempotency` call. */
export const CALL_SPAN_NAME = 'withIdempotency';

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
  cleanupTrigger: 'idempotency.cleanup.trigger',
  cleanupOutcome: 'idempotency.cleanup.outcome',
  cleanupSchema: 'idempotency.cleanup.schema',
  cleanupDeleted: 'idempotency.cleanup.deleted',
  cleanupBatches: 'idempotency.cleanup.batches',
  errorType: 'error.type',
} as const;

/** Instrument names. */
export const METRIC = {
  /** Histogram, seconds: every call, by outcome. Its count is the number of calls. */
  callDuration: 'idempotency.call.duration',
  /** Histogram, seconds: the claim, `fn` and the record of a call's last attempt, by phase. */
  phaseDuration: 'idempotency.phase.duration',
  /** Counter, entries: expired entries cleanup deleted, by trigger and outcome. */
  cleanupDeleted: 'idempotency.cleanup.deleted',
  /** Histogram, seconds: cleanup runs and scheduled ticks, by trigger and outcome. */
  cleanupDuration: 'idempotency.cleanup.duration',
} as const;
