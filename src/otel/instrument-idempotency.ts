import type { AsyncLocalStorage } from 'node:async_hooks';
import { tracingChannel } from 'node:diagnostics_channel';
import {
  type Attributes,
  type Context,
  context,
  type Histogram,
  type MeterProvider,
  metrics,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { WITH_IDEMPOTENCY_CHANNEL, type WithIdempotencyEvent } from '../index.ts';
import { ATTR, CALL_SPAN_NAME, INSTRUMENTATION_NAME, METRIC } from './attribute-names.ts';
import { errorType } from './error-type.ts';

/** Options of {@link instrumentIdempotency}. */
export interface IdempotencyInstrumentationOptions {
  /** Where spans go. Default: the global tracer provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** Where metrics go. Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
  /**
   * The `idempotency.scope` label of metric points, from a call's scope; `undefined` leaves it
   * off. Default: left off, because scopes often hold tenant or merchant ids, and one time
   * series per tenant can overwhelm a metrics backend. Spans always carry the scope.
   *
   * @example
   * ```ts
   * // 'merchant:42:create-payment' -> 'create-payment'
   * instrumentIdempotency({ scopeLabel: (scope) => scope.split(':').at(-1) });
   * ```
   */
  scopeLabel?: (scope: string) => string | undefined;
}

/** What {@link instrumentIdempotency} returns. */
export interface IdempotencyInstrumentation {
  /** Stops the instrumentation: no more spans or metric points. Calling it again does nothing. */
  disable(): void;
}

/**
 * Turns the calls `withIdempotency` publishes on `node:diagnostics_channel` into OpenTelemetry
 * spans and metrics: one span per call, a child of the span active where the call was made and the
 * parent of the spans made inside it (the database's, `fn`'s), with its outcome; and histograms
 * of call and phase durations by outcome. Keys appear as their keyed hash, the raw key only after
 * `configureKeyPrivacy({ includeRawKeys: true })`; requests, responses and error messages never.
 *
 * Call it once, at startup, after the OpenTelemetry SDK is registered.
 *
 * @example
 * ```ts
 * import { instrumentIdempotency } from 'idempotency-ledger/otel';
 *
 * const instrumentation = instrumentIdempotency({
 *   scopeLabel: (scope) => scope.split(':').at(-1),
 * });
 * // at shutdown:
 * instrumentation.disable();
 * ```
 */
export function instrumentIdempotency(
  options: IdempotencyInstrumentationOptions = {},
): IdempotencyInstrumentation {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(
    INSTRUMENTATION_NAME,
  );
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(
    INSTRUMENTATION_NAME,
  );
  const callDuration = meter.createHistogram(METRIC.callDuration, {
    description: 'Duration of withIdempotency calls, by outcome.',
    unit: 's',
  });
  const phaseDuration = meter.createHistogram(METRIC.phaseDuration, {
    description: "Duration of the claim, fn and the record in a call's last attempt.",
    unit: 's',
  });
  const scopeLabel = options.scopeLabel;
  const spans = new WeakMap<WithIdempotencyEvent, Span>();
  const channel = tracingChannel<Context, WithIdempotencyEvent>(WITH_IDEMPOTENCY_CHANNEL);

  // Node runs the call inside `store.run(transform(event), ...)` for every store bound to
  // `start`. OpenTelemetry does not expose its AsyncLocalStorage, but `context.with` is the
  // public way to run code in a context, whatever the context manager: so the store is an object
  // whose `run` is `context.with`, and the call (fn, its queries) runs with its span active.
  const otelContextStore = {
    run: <R>(active: Context, work: () => R): R => context.with(active, work),
  } as unknown as AsyncLocalStorage<Context>;
  const openSpan = (event: WithIdempotencyEvent): Context => {
    const parent = context.active();
    // A throw here would reach Node as an uncaught exception: telemetry must never do that.
    try {
      const span = tracer.startSpan(CALL_SPAN_NAME, { kind: SpanKind.INTERNAL }, parent);
      spans.set(event, span);
      return trace.setSpan(parent, span);
    } catch {
      return parent;
    }
  };
  // asyncEnd comes last for every call, with the outcome, result or error, and timings set.
  const onAsyncEnd = (message: unknown) => {
    const event = message as WithIdempotencyEvent;
    const span = spans.get(event);
    spans.delete(event);
    if (span) endSpan(span, event);
    recordMetrics(event, callDuration, phaseDuration, scopeLabel);
  };
  channel.start.bindStore(otelContextStore, openSpan);
  channel.asyncEnd.subscribe(onAsyncEnd);

  let enabled = true;
  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      channel.start.unbindStore(otelContextStore);
      channel.asyncEnd.unsubscribe(onAsyncEnd);
    },
  };
}

function endSpan(span: Span, event: WithIdempotencyEvent): void {
  span.setAttributes(spanAttributes(event));
  if (event.outcome === 'failed') {
    const type = errorType(event.error);
    span.setAttribute(ATTR.errorType, type);
    // The type, not the message: a message may carry what the caller's code put in it.
    span.setStatus({ code: SpanStatusCode.ERROR, message: type });
  }
  span.end();
}

function spanAttributes(event: WithIdempotencyEvent): Attributes {
  const attributes: Attributes = {
    [ATTR.transaction]: event.transaction,
    [ATTR.attempts]: event.attempts,
    [ATTR.replayed]: event.outcome === 'replayed',
  };
  if (event.outcome !== undefined) attributes[ATTR.outcome] = event.outcome;
  if (event.scope !== undefined) attributes[ATTR.scope] = event.scope;
  if (event.keyHash !== undefined) attributes[ATTR.keyHash] = event.keyHash;
  if (event.key !== undefined) attributes[ATTR.key] = event.key;
  if (event.onConcurrent !== undefined) attributes[ATTR.onConcurrent] = event.onConcurrent;
  if (event.replayedFrom !== undefined) attributes[ATTR.replayedFrom] = event.replayedFrom;
  if (event.conflictReason !== undefined) attributes[ATTR.conflictReason] = event.conflictReason;
  return attributes;
}

function recordMetrics(
  event: WithIdempotencyEvent,
  callDuration: Histogram,
  phaseDuration: Histogram,
  scopeLabel: ((scope: string) => string | undefined) | undefined,
): void {
  const attributes: Attributes = {
    [ATTR.outcome]: event.outcome ?? 'failed',
    [ATTR.transaction]: event.transaction,
  };
  const label =
    event.scope !== undefined && scopeLabel ? labelOf(scopeLabel, event.scope) : undefined;
  if (label !== undefined) attributes[ATTR.scope] = label;
  if (event.replayedFrom !== undefined) attributes[ATTR.replayedFrom] = event.replayedFrom;
  if (event.conflictReason !== undefined) attributes[ATTR.conflictReason] = event.conflictReason;
  if (event.outcome === 'failed') attributes[ATTR.errorType] = errorType(event.error);
  if (event.durationMs !== undefined) callDuration.record(event.durationMs / 1000, attributes);
  const phases = [
    ['claim', event.claimMs],
    ['fn', event.fnMs],
    ['record', event.recordMs],
  ] as const;
  for (const [phase, ms] of phases) {
    if (ms !== undefined) phaseDuration.record(ms / 1000, { ...attributes, [ATTR.phase]: phase });
  }
}

// The user's mapper runs inside a diagnostics_channel subscriber, where a throw would become an
// uncaught exception: a mapper that fails leaves the label off instead.
function labelOf(scopeLabel: (scope: string) => string | undefined, scope: string) {
  try {
    return scopeLabel(scope);
  } catch {
    return undefined;
  }
}
