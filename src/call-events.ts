/**
 * The events `withIdempotency` publishes on `node:diagnostics_channel`, with no dependency: a
 * tracing channel, so that a subscriber (an OpenTelemetry adapter, a logger, a metrics counter)
 * sees each call start and end, with its outcome, within the call's async context. Nothing is
 * built, hashed or published while no one subscribes.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import {
  type ConflictReason,
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
} from './errors.ts';
import { hashIdempotencyKey, rawKeysIncluded } from './key-privacy.ts';

/**
 * The tracing channel of `withIdempotency` calls: `tracingChannel(WITH_IDEMPOTENCY_CHANNEL)`
 * publishes `start`, `end`, `asyncStart`, `asyncEnd` and `error` with one
 * {@link WithIdempotencyEvent} per call.
 */
export const WITH_IDEMPOTENCY_CHANNEL = 'idempotency-ledger:with-idempotency';

/** How a call ended. */
export type CallOutcome =
  /** `fn` ran and its response was committed with the entry. */
  | 'executed'
  /** The stored response of an earlier call was returned; `fn` did not run (or rolled back). */
  | 'replayed'
  /** A 409: a duplicate in flight (`'reject'`), a wait that timed out, or the same transaction. */
  | 'conflict'
  /** A 422: the key was used with another request. */
  | 'key_reused'
  /** A 400 or a programming error: a malformed key or invalid options. Nothing ran. */
  | 'invalid'
  /** Anything else: `fn` threw, the database failed, the response could not be stored. */
  | 'failed';

/**
 * What a subscriber of {@link WITH_IDEMPOTENCY_CHANNEL} receives: one object per call, filled in
 * as the call goes (the outcome and the timings by `asyncEnd` or `error`). A public contract:
 * fields are only ever added while `version` stays 1.
 *
 * Keys appear as a keyed hash (`keyHash`), the raw key only after
 * `configureKeyPrivacy({ includeRawKeys: true })`. Like every tracing channel context, it also
 * gets `result` (the {@link IdempotencyResult}, response included) or `error` from Node: a
 * subscriber that exports telemetry must not export those as they are.
 */
export interface WithIdempotencyEvent {
  readonly version: 1;
  /** The scope, as given (undefined when it was not a string). */
  readonly scope: string | undefined;
  /** HMAC-SHA256 of the key under the configured secret, 32 hex digits; undefined for a non-string key. */
  readonly keyHash: string | undefined;
  /** The raw key: only with `includeRawKeys`. */
  readonly key?: string;
  /** `'library'`: the library's own transaction (a `Kysely` was passed); `'caller'`: yours. */
  readonly transaction: 'library' | 'caller';
  /** The `onConcurrent` option as given (undefined: the default, `'wait'`). */
  readonly onConcurrent: unknown;
  outcome?: CallOutcome;
  /** Where a replay came from: the ledger, or the in-process {@link ReplayCache}. */
  replayedFrom?: 'ledger' | 'replay_cache';
  /** For a conflict: why. */
  conflictReason?: ConflictReason;
  /** Transactions the library ran for the call (retries on 40001/40P01 and lost races add one). */
  attempts: number;
  /** Milliseconds in the claim (it includes any wait for a duplicate in flight), last attempt. */
  claimMs?: number;
  /** Milliseconds in `fn`, last attempt. */
  fnMs?: number;
  /** Milliseconds recording the response, last attempt. */
  recordMs?: number;
  /** Milliseconds from the call to its outcome. */
  durationMs?: number;
  result?: unknown;
  error?: unknown;
}

const channel: TracingChannel<WithIdempotencyEvent, WithIdempotencyEvent> =
  tracingChannel(WITH_IDEMPOTENCY_CHANNEL);

function subscribed(): boolean {
  const { start, end, asyncStart, asyncEnd, error } = channel;
  return (
    start.hasSubscribers ||
    end.hasSubscribers ||
    asyncStart.hasSubscribers ||
    asyncEnd.hasSubscribers ||
    error.hasSubscribers
  );
}

/**
 * Runs one `withIdempotency` call inside its trace, when anyone subscribes; `run` gets the event
 * to fill in (undefined when no one does).
 */
export function traceCall<R extends { replayed: boolean }>(
  db: unknown,
  options: unknown,
  run: (event: WithIdempotencyEvent | undefined) => Promise<R>,
): Promise<R> {
  if (!subscribed()) return run(undefined);
  const event = newEvent(db, options);
  const startedAt = performance.now();
  return channel.tracePromise(async () => {
    try {
      const result = await run(event);
      event.outcome = result.replayed ? 'replayed' : 'executed';
      return result;
    } catch (error) {
      event.outcome = outcomeOf(error);
      if (error instanceof IdempotencyConflictError) event.conflictReason = error.reason;
      throw error;
    } finally {
      event.durationMs = performance.now() - startedAt;
    }
  }, event);
}

function newEvent(db: unknown, options: unknown): WithIdempotencyEvent {
  const given = (typeof options === 'object' && options !== null ? options : {}) as {
    scope?: unknown;
    key?: unknown;
    onConcurrent?: unknown;
  };
  const key = typeof given.key === 'string' ? given.key : undefined;
  return {
    version: 1,
    scope: typeof given.scope === 'string' ? given.scope : undefined,
    keyHash: key === undefined ? undefined : hashIdempotencyKey(key),
    ...(key !== undefined && rawKeysIncluded() ? { key } : {}),
    transaction:
      (db as { isTransaction?: unknown } | null)?.isTransaction === true ? 'caller' : 'library',
    onConcurrent: given.onConcurrent,
    attempts: 0,
  };
}

function outcomeOf(error: unknown): CallOutcome {
  if (error instanceof IdempotencyConflictError) return 'conflict';
  if (error instanceof IdempotencyKeyReusedError) return 'key_reused';
  if (
    error instanceof InvalidIdempotencyKeyError ||
    error instanceof InvalidIdempotencyOptionsError
  )
    return 'invalid';
  return 'failed';
}

/** Runs `work`, and puts the milliseconds it took into `event[field]` when there is an event. */
export function timed<T>(
  event: WithIdempotencyEvent | undefined,
  field: 'claimMs' | 'fnMs' | 'recordMs',
  work: () => Promise<T>,
): Promise<T> {
  if (!event) return work();
  const startedAt = performance.now();
  return work().finally(() => {
    event[field] = performance.now() - startedAt;
  });
}
