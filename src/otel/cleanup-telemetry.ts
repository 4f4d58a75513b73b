import {
  type Attributes,
  type Context,
  type Meter,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import type { CleanupEvent } from '../index.ts';
import { ATTR, CLEANUP_SPAN_NAME, METRIC } from './attribute-names.ts';
import { errorType } from './error-type.ts';
import { eventSpans } from './event-spans.ts';

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
  // A scheduled tick belongs to no request: it would otherwise be a child of whatever span was
  // active when scheduleCleanup was called, long after that span ended.
  const spans = eventSpans<CleanupEvent>(
    tracer,
    CLEANUP_SPAN_NAME,
    (event) => event.trigger === 'schedule',
  );
  return {
    open: spans.open,
    close(event) {
      const attributes: Attributes = {
        [ATTR.cleanupTrigger]: event.trigger,
        [ATTR.cleanupOutcome]: event.outcome ?? 'failed',
      };
      if (event.outcome === 'failed') attributes[ATTR.errorType] = errorType(event.error);
      const span = spans.take(event);
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
