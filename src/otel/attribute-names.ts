/**
 * The names of the attributes, spans and instruments `idempotency-ledger/otel` exports. There is
 * no OpenTelemetry semantic convention for idempotency: these follow the conventions' shape
 * (a dotted namespace, durations in seconds on histograms, `error.type` for failures).
 */

/** The instrumentation scope spans and metrics are reported under. */
export const INSTRUMENTATION_NAME = 'idempotency-ledger';

/** The span of one `withIdempotency` call. */
export const CALL_SPAN_NAME = 'withIdempotency';

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
  errorType: 'error.type',
} as const;

/** Instrument names. */
export const METRIC = {
  /** Histogram, seconds: every call, by outcome. Its count is the number of calls. */
  callDuration: 'idempotency.call.duration',
  /** Histogram, seconds: the claim, `fn` and the record of a call's last attempt, by phase. */
  phaseDuration: 'idempotency.phase.duration',
} as const;
