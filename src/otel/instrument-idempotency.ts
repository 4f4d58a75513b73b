import { channel, tracingChannel } from 'node:diagnostics_channel';
import {
  type Context,
  type MeterProvider,
  metrics,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import {
  CLEANUP_CHANNEL,
  type CleanupEvent,
  WITH_IDEMPOTENCY_CHANNEL,
  type WithIdempotencyEvent,
} from '../index.ts';
import {
  OPERATION_LEASE_CHANNEL,
  type OperationLeaseEvent,
  RUN_OPERATION_CHANNEL,
  type RunOperationEvent,
} from '../operations/index.ts';
import { INSTRUMENTATION_NAME } from './attribute-names.ts';
import { callTelemetry } from './call-telemetry.ts';
import { cleanupTelemetry } from './cleanup-telemetry.ts';
import { operationTelemetry } from './operation-telemetry.ts';
import { type ObservedLedger, observeOperations } from './operations-gauges.ts';
import { safeTransform, spanContextStore } from './span-context-store.ts';

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
  /**
   * A database to read gauges of operations in progress from, each time metrics are collected
   * (one query): `idempotency.operations.in_progress`, `.abandoned` and `.oldest_age`. Give it in
   * one process, not every instance: the figures are the database's, not the process's.
   *
   * @example
   * ```ts
   * instrumentIdempotency({ observe: { db } });
   * ```
   */
  observe?: ObservedLedger;
}

/** What {@link instrumentIdempotency} returns. */
export interface IdempotencyInstrumentation {
  /** Stops the instrumentation: no more spans or metric points. Calling it again does nothing. */
  disable(): void;
}

/**
 * Turns the events the library publishes on `node:diagnostics_channel` into OpenTelemetry spans
 * and metrics.
 *
 * - `withIdempotency` calls: one span per call, a child of the span active where the call was
 *   made and the parent of the spans made inside it (the database's, `fn`'s), with its outcome;
 *   histograms of call and phase durations by outcome.
 * - cleanup (`cleanupExpired`, `scheduleCleanup` ticks): a span per run, the entries deleted, and
 *   the run's duration.
 * - operations (`idempotency-ledger/operations`): a span per `runOperation` call with its lease
 *   changes as span events, durations by operation and outcome, lease changes by kind; with
 *   `observe`, gauges of the operations in progress.
 *
 * Keys appear as their keyed hash, the raw key only after
 * `configureKeyPrivacy({ includeRawKeys: true })`; requests, responses and error messages never.
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
  const operations = operationTelemetry(tracer, meter);
  const onLease = (message: unknown) => {
    try {
      operations.lease(message as OperationLeaseEvent);
    } catch {}
  };
  const leases = channel(OPERATION_LEASE_CHANNEL);
  leases.subscribe(onLease);
  const detach = [
    attach(WITH_IDEMPOTENCY_CHANNEL, callTelemetry(tracer, meter, options.scopeLabel)),
    attach(CLEANUP_CHANNEL, cleanupTelemetry(tracer, meter)),
    attach(RUN_OPERATION_CHANNEL, operations),
    () => leases.unsubscribe(onLease),
  ];
  if (options.observe) detach.push(observeOperations(meter, options.observe));
  let enabled = true;
  return {
    disable() {
      if (!enabled) return;
      enabled = false;
      for (const each of detach) each();
    },
  };
}

/**
 * Opens a span at each `start` of a tracing channel, runs the traced work in its context, and
 * closes it at `asyncEnd`, which comes last for every traced promise, with the outcome set.
 * Returns what undoes it.
 */
function attach<E extends WithIdempotencyEvent | CleanupEvent | RunOperationEvent>(
  name: string,
  telemetry: { open(event: E): Context; close(event: E): void },
): () => void {
  const channel = tracingChannel<Context, E>(name);
  const store = spanContextStore();
  const close = (message: unknown) => {
    // A throw in a subscriber would reach Node as an uncaught exception.
    try {
      telemetry.close(message as E);
    } catch {}
  };
  channel.start.bindStore(
    store,
    safeTransform((event: E) => telemetry.open(event)),
  );
  channel.asyncEnd.subscribe(close);
  return () => {
    channel.start.unbindStore(store);
    channel.asyncEnd.unsubscribe(close);
  };
}
