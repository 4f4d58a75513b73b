import {
  type Attributes,
  type Context,
  context,
  type Meter,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { CleanupEvent } from '../index.ts';
import { ATTR, CLEANUP_SPAN_NAME, METRIC } from './attribute-names.ts';
import { errorType } from './error-type.ts';

/** Spans and metric points for cleanup runs and scheduled ticks. */
export interface CleanupTelemetry {
  open(event: CleanupEvent): Context;
  close(event: CleanupEvent): void;
}

export function cleanupTelemetry(tracer: Tracer, meter: Meter): CleanupTelemetry {
  const deleted = meter.createCounter(METRIC.cleanupDeleted, {
    description: 'Expired ledger entries deleted by cleanup.',
    unit: '{entry}',
  });
  const duration = meter.createHistogram(METRIC.cleanupDuration, {
    description: 'Duration of cleanup runs and scheduled ticks, by outcome.',
    unit: 's',
  });
  const spans = new WeakMap<CleanupEvent, Span>();
  return {
    open(event) {
      const parent = context.active();
      // A scheduled tick belongs to no request: it would otherwise be a child of whatever span
      // was active when scheduleCleanup was called, long after that span ended.
      const span = tracer.startSpan(
        CLEANUP_SPAN_NAME,
        { kind: SpanKind.INTERNAL, root: event.trigger === 'schedule' },
        parent,
      );
      spans.set(event, span);
      return trace.setSpan(parent, span);
    },
    close(event) {
      const attributes: Attributes = {
        [ATTR.cleanupTrigger]: event.trigger,
        [ATTR.cleanupOutcome]: event.outcome ?? 'failed',
      };
      if (event.outcome === 'failed') attributes[ATTR.errorType] = errorType(event.error);
      const span = spans.get(event);
      spans.delete(event);
      if (span) {
        span.setAttributes({
          ...attributes,
          [ATTR.cleanupSchema]: event.schema,
          [ATTR.cleanupDeleted]: event.deleted,
          [ATTR.cleanupBatches]: event.batches,
        });
        if (event.outcome === 'failed') {
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorType(event.error) });
        }
        span.end();
      }
      deleted.add(event.deleted, attributes);
      if (event.durationMs !== undefined) duration.record(event.durationMs / 1000, attributes);
    },
  };
}
