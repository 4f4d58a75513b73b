import { type Context, context, type Span, SpanKind, type Tracer, trace } from '@opentelemetry/api';

/** The spans of one tracing channel's events: opened at `start`, taken back at `asyncEnd`. */
export interface EventSpans<E extends object> {
  /** Opens the event's span as a child of the active context; returns the context it is active in. */
  open(event: E): Context;
  /** The event's span, once: it is forgotten here, and the caller ends it. */
  take(event: E): Span | undefined;
}

/**
 * Spans named `name`, one per event, kept in a WeakMap keyed by the event (an event that never
 * reaches `asyncEnd` takes its span with it). `isRoot` starts a span of its own trace instead.
 */
export function eventSpans<E extends object>(
  tracer: Tracer,
  name: string,
  isRoot: (event: E) => boolean = () => false,
): EventSpans<E> {
  const spans = new WeakMap<E, Span>();
  return {
    open(event) {
      const parent = context.active();
      const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, root: isRoot(event) }, parent);
      spans.set(event, span);
      return trace.setSpan(parent, span);
    },
    take(event) {
      const span = spans.get(event);
      spans.delete(event);
      return span;
    },
  };
}
