import type { AsyncLocalStorage } from 'node:async_hooks';
import { type Context, context } from '@opentelemetry/api';

/**
 * A store to bind to a tracing channel's `start`, so that the traced work runs in the context the
 * transform returns (the context with its span active).
 *
 * Node runs the work inside `store.run(transform(event), ...)` for every store bound to `start`.
 * OpenTelemetry does not expose its AsyncLocalStorage, but `context.with` is the public way to run
 * code in a context, whatever the context manager: so the store is an object whose `run` is
 * `context.with`, which is all Node calls on it.
 */
export function spanContextStore(): AsyncLocalStorage<Context> {
  // A new object each time: a channel keeps one transform per store object, so two
  // instrumentations sharing one would replace each other's.
  return {
    run: <R>(active: Context, work: () => R): R => context.with(active, work),
  } as unknown as AsyncLocalStorage<Context>;
}

/**
 * Wraps a transform for `bindStore`: a throw there would reach Node as an uncaught exception, and
 * telemetry must never do that, so a failing transform leaves the context as it was.
 */
export function safeTransform<E>(transform: (event: E) => Context): (event: E) => Context {
  return (event) => {
    try {
      return transform(event);
    } catch {
      return context.active();
    }
  };
}
