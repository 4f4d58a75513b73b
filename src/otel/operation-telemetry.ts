import {
  type Attributes,
  type Context,
  type Meter,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { OperationLeaseEvent, RunOperationEvent } from '../operations/index.ts';
import { ATTR, METRIC, RUN_OPERATION_SPAN_NAME } from './attribute-names.ts';
import { errorType } from './error-type.ts';
import { eventSpans } from './event-spans.ts';

/** Spans and metric points for `runOperation` calls and the leases of their attempts. */
export interface OperationTelemetry {
  open(event: RunOperationEvent): Context;
  close(event: RunOperationEvent): void;
  /** For the lease channel: a span event on the attempt's span, and a count. */
  lease(event: OperationLeaseEvent): void;
}

export function operationTelemetry(tracer: Tracer, meter: Meter): OperationTelemetry {
  const duration = meter.createHistogram(METRIC.operationDuration, {
    description: 'Duration of runOperation calls, by operation and outcome.',
    unit: 's',
  });
  const leaseEvents = meter.createCounter(METRIC.operationLeaseEvents, {
    description: "Changes to operation attempts' leases, by operation and kind.",
    unit: '{event}',
  });
  const spans = eventSpans<RunOperationEvent>(tracer, RUN_OPERATION_SPAN_NAME);
  return {
    open: spans.open,
    close(event) {
      const outcome = event.outcome ?? 'failed';
      const failed = outcome === 'failed' || outcome === 'pending' || outcome === 'lease_lost';
      const attributes: Attributes = {
        [ATTR.operation]: event.operation,
        [ATTR.outcome]: outcome,
      };
      if (failed) attributes[ATTR.errorType] = errorType(event.error);
      const span = spans.take(event);
      if (span?.isRecording()) {
        span.setAttributes({
          ...attributes,
          [ATTR.replayed]: outcome === 'replayed',
          [ATTR.operationHeldWaits]: event.heldWaits,
        });
        if (event.scope !== undefined) span.setAttribute(ATTR.scope, event.scope);
        if (event.keyHash !== undefined) span.setAttribute(ATTR.keyHash, event.keyHash);
        if (event.resumed !== undefined) span.setAttribute(ATTR.operationResumed, event.resumed);
        if (event.fencingToken !== undefined) {
          span.setAttribute(ATTR.operationFencingToken, event.fencingToken);
        }
        // A 503 (pending) or a lost lease is a failed attempt, resumed by a retry: an error here.
        if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: errorType(event.error) });
      }
      span?.end();
      if (event.durationMs !== undefined) duration.record(event.durationMs / 1000, attributes);
    },
    lease(event) {
      leaseEvents.add(1, { [ATTR.operation]: event.operation, [ATTR.leaseKind]: event.kind });
      // Published within the attempt's context (the heartbeat's timer too): its span is active.
      trace.getActiveSpan()?.addEvent(`lease.${event.kind}`, {
        [ATTR.operationFencingToken]: event.fencingToken,
      });
    },
  };
}
