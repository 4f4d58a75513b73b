/**
 * The events `withIdempotencyBatch` publishes on `node:diagnostics_channel`: one traced event per
 * batch, on a channel of its own. A batch is not a `withIdempotency` call, and subscribers of
 * {@link WITH_IDEMPOTENCY_CHANNEL} (which count calls, time claims) keep seeing those only.
 * The event carries counts, no key and no key hash. Nothing is built while no one subscribes.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import { traceRun } from './internal/trace-run.ts';

/**
 * The tracing channel of `withIdempotencyBatch` calls: `start`, `end`, `asyncStart`, `asyncEnd`
 * and `error`, with one {@link WithIdempotencyBatchEvent} per batch.
 */
export const WITH_IDEMPOTENCY_BATCH_CHANNEL = 'idempotency-ledger:with-idempotency-batch';

/**
 * What a subscriber of {@link WITH_IDEMPOTENCY_BATCH_CHANNEL} receives, filled in as the batch
 * goes. While `version` is 1, fields are only added.
 *
 * Like every tracing channel context, it also gets `result` (the array of `BatchItemResult`,
 * every item's response included) or `error` from Node: a subscriber that exports telemetry
 * must not export those as they are.
 *
 * @example
 * ```ts
 * tracingChannel(WITH_IDEMPOTENCY_BATCH_CHANNEL).subscribe({
 *   asyncEnd: (event) => metrics.histogram('batch.executed', event.executed ?? 0),
 *   start() {}, end() {}, asyncStart() {}, error() {},
 * });
 * ```
 */
export interface WithIdempotencyBatchEvent {
  readonly version: 1;
  /** The validated scope; undefined for invalid options. */
  readonly scope?: string;
  /** Items given, repeats of a key included. */
  readonly size?: number;
  /** Transactions run for the batch (a serialization failure or deadlock adds one). */
  readonly attempts: number;
  /** Items whose `fn` ran and committed (by `asyncEnd`, on success). */
  readonly executed?: number;
  /** Items that replayed a stored response. */
  readonly replayed?: number;
  /** Items refused (another request for the key, an undecryptable response). */
  readonly refused?: number;
  /** Milliseconds from the call to its outcome. */
  readonly durationMs?: number;
  /** Set by Node: one `BatchItemResult` per item, responses included. Do not export it as it is. */
  readonly result?: unknown;
  /** Set by Node: the error the batch threw. Do not export it as it is. */
  readonly error?: unknown;
}

/** The event as the library fills it in. */
export type BatchEvent = {
  -readonly [K in keyof WithIdempotencyBatchEvent]: WithIdempotencyBatchEvent[K];
};

const channel: TracingChannel<BatchEvent, BatchEvent> = tracingChannel(
  WITH_IDEMPOTENCY_BATCH_CHANNEL,
);

/** Runs one batch inside its trace when anyone subscribes; `run` gets the event to fill in. */
export function traceBatch<R extends readonly { outcome: string }[]>(
  run: (event: BatchEvent | undefined) => Promise<R>,
): Promise<R> {
  const { start, end, asyncStart, asyncEnd, error } = channel;
  const subscribed =
    start.hasSubscribers ||
    end.hasSubscribers ||
    asyncStart.hasSubscribers ||
    asyncEnd.hasSubscribers ||
    error.hasSubscribers;
  if (!subscribed) return run(undefined);
  const event: BatchEvent = { version: 1, attempts: 0 };
  return traceRun(channel, event, () => run(event), {
    succeeded(results) {
      const count = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
      event.executed = count('executed');
      event.replayed = count('replayed');
      event.refused = count('refused');
    },
    failed() {},
  });
}
