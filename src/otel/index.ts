/**
 * `idempotency-ledger/otel`: OpenTelemetry spans and metrics for `withIdempotency` calls, from
 * the events the core publishes on `node:diagnostics_channel`. `@opentelemetry/api` is an
 * optional peer dependency: only this subpath needs it.
 *
 * @module
 */
export {
  ATTR,
  CALL_SPAN_NAME,
  CLEANUP_SPAN_NAME,
  INSTRUMENTATION_NAME,
  METRIC,
  RUN_OPERATION_SPAN_NAME,
  SPAN_EVENT,
} from './attribute-names.ts';
export {
  type IdempotencyInstrumentation,
  type IdempotencyInstrumentationOptions,
  instrumentIdempotency,
} from './instrument-idempotency.ts';
export type { ObservedLedger } from './operations-gauges.ts';
