import {
  type Attributes,
  type Context,
  type Histogram,
  type Meter,
  type Span,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import type { WithIdempotencyEvent } from '../index.ts';
import { ATTR, CALL_SPAN_NAME, METRIC, SPAN_EVENT } from './attribute-names.ts';
import { errorType } from './error-type.ts';
import { eventSpans } from './event-spans.ts';

/** Spans and metric points for `withIdempotency` calls. */
export interface CallTelemetry {
  /** For `start`: opens the call's span; returns the context to run the call in. */
  open(event: WithIdempotencyEvent): Context;
  /** For `asyncEnd`: ends the call's span and records its metric points. */
  close(event: WithIdempotencyEvent): void;
}

export function callTelemetry(
  tracer: Tracer,
  meter: Meter,
  scopeLabel: ((scope: string) => string | undefined) | undefined,
): CallTelemetry {
  const callDuration = meter.createHistogram(METRIC.callDuration, {
    description: 'Duration of withIdempotency calls, by outcome.',
    unit: 's',
  });
  const phaseDuration = meter.createHistogram(METRIC.phaseDuration, {
    description: "Duration of the claim, fn and the record in a call's last attempt.",
    unit: 's',
  });
  const spans = eventSpans<WithIdempotencyEvent>(tracer, CALL_SPAN_NAME);
  return {
    open: spans.open,
    close(event) {
      const span = spans.take(event);
      if (span) endSpan(span, event);
      recordMetrics(event, { callDuration, phaseDuration }, scopeLabel);
    },
  };
}

function endSpan(span: Span, event: WithIdempotencyEvent): void {
  // A span the sampler dropped records nothing: skip building its attributes (and the key's hash).
  if (!span.isRecording()) {
    span.end();
    return;
  }
  span.setAttributes(spanAttributes(event));
  // Both are known only once the call is over, so the events carry its end time.
  if (event.metInFlight)
    span.addEvent(SPAN_EVENT.metInFlight, { [ATTR.claimMs]: event.claimMs ?? 0 });
  if (event.expiredEntry && event.outcome === 'executed') span.addEvent(SPAN_EVENT.expiredEntry);
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
  if (event.metInFlight !== undefined) attributes[ATTR.metInFlight] = event.metInFlight;
  if (event.expiredEntry !== undefined) attributes[ATTR.expiredEntry] = event.expiredEntry;
  return attributes;
}

function recordMetrics(
  event: WithIdempotencyEvent,
  histograms: { callDuration: Histogram; phaseDuration: Histogram },
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
  if (event.durationMs !== undefined) {
    histograms.callDuration.record(event.durationMs / 1000, attributes);
  }
  const phases = [
    ['claim', event.claimMs],
    ['fn', event.fnMs],
    ['record', event.recordMs],
  ] as const;
  for (const [phase, ms] of phases) {
    if (ms === undefined) continue;
    histograms.phaseDuration.record(ms / 1000, { ...attributes, [ATTR.phase]: phase });
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
