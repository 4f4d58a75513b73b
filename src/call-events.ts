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
import { traceRun } from './internal/trace-run.ts';
import { hashIdempotencyKey, rawKeysIncluded } from './key-privacy.ts';

/**
 * The tracing channel of `withIdempotency` calls: `tracingChannel(WITH_IDEMPOTENCY_CHANNEL)`
 * publishes `start`, `end`, `asyncStart`, `asyncEnd` and `error` with one
 * {@link WithIdempotencyEvent} per call.
 */
export const WITH_IDEMPOTENCY_CHANNEL = 'idempotency-ledger:with-idempotency';

/**
 * How a call ended. A consumer of version 1 must tolerate values it does not know: new ones may
 * be added, existing ones keep their meaning.
 */
export type CallOutcome =
  /** `fn` ran and its response was committed with the entry. */
  | 'executed'
  /** The stored response of an earlier call was returned; `fn` did not run (or rolled back). */
  | 'replayed'
  /** A 409: a duplicate in flight (`'reject'`), a wait that timed out, or the same transaction. */
  | 'conflict'
  /** A 422: the key was used with another request. */
  | 'key_reused'
  /** A 400: the client's key is missing or malformed. Nothing ran. */
  | 'invalid_key'
  /** A programming error: invalid options, or no function to run. Nothing ran. */
  | 'invalid_options'
  /** Anything else: `fn` threw, the database failed, the response could not be stored. */
  | 'failed';

/**
 * What a subscriber of {@link WITH_IDEMPOTENCY_CHANNEL} receives: one object per call, filled in
 * as the call goes (the outcome and the timings by `asyncEnd` or `error`), shared by every
 * subscriber, so read-only to them. A public contract: while `version` is 1, fields are only
 * added, and enumerations (`outcome`, `conflictReason`, `replayedFrom`) may gain values.
 *
 * Keys appear as a keyed hash (`keyHash`), the raw key only after
 * `configureKeyPrivacy({ includeRawKeys: true })`. Like every tracing channel context, it also
 * gets `result` (the {@link IdempotencyResult}, response included) or `error` from Node: a
 * subscriber that exports telemetry must not export those as they are. The `error` channel fires
 * for every outcome but `executed` and `replayed`, a 409 and a 422 included.
 */
export interface WithIdempotencyEvent {
  readonly version: 1;
  /** `'library'`: the library's own transaction (a `Kysely` was passed); `'caller'`: yours. */
  readonly transaction: 'library' | 'caller';
  /** The validated scope; undefined until the options are validated, and for invalid ones. */
  readonly scope?: string;
  /**
   * HMAC-SHA256 of the key under the configured secret, 32 hex digits (the scope is not part of
   * it); undefined until the options are validated, and for invalid ones.
   */
  readonly keyHash?: string;
  /** The raw key: only with `includeRawKeys`. */
  readonly key?: string;
  /** The validated `onConcurrent` (the default filled in). */
  readonly onConcurrent?: 'wait' | 'reject' | 'optimistic';
  readonly outcome?: CallOutcome;
  /** Where the entry that answered (or refused) the call was found. */
  readonly replayedFrom?: 'ledger' | 'replay_cache';
  /** For a conflict: why. */
  readonly conflictReason?: ConflictReason;
  /**
   * True when a duplicate in flight decided the call: the claim found the key committed by
   * another call since this one's lookup (most often after waiting for that call's transaction:
   * `claimMs` says how long), `'optimistic'` lost the race to one, or a duplicate held the key
   * past the wait (a conflict). False when the claim found the key free (a duplicate that held it
   * and rolled back is not told apart). Undefined in the caller's transaction (no lookup first).
   */
  readonly metInFlight?: boolean;
  /**
   * True when the lookup found the key's entry expired: this call's key was new again only
   * because its earlier entry expired (a client retrying after the TTL, or keys reused on
   * purpose), and the claim takes the row over. Undefined in the caller's transaction.
   */
  readonly expiredEntry?: boolean;
  /** Transactions the library ran for the call (retries on 40001/40P01 and lost races add one). */
  readonly attempts: number;
  /** Milliseconds in the claim of the last attempt (any wait for a duplicate in flight included). */
  readonly claimMs?: number;
  /** Milliseconds in `fn`, last attempt. */
  readonly fnMs?: number;
  /** Milliseconds recording the response, last attempt. */
  readonly recordMs?: number;
  /** Milliseconds from the call to its outcome. */
  readonly durationMs?: number;
  readonly result?: unknown;
  readonly error?: unknown;
}

/** The event as the library fills it in. */
export type CallEvent = { -readonly [K in keyof WithIdempotencyEvent]: WithIdempotencyEvent[K] };

const channel: TracingChannel<CallEvent, CallEvent> = tracingChannel(WITH_IDEMPOTENCY_CHANNEL);

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
  run: (event: CallEvent | undefined) => Promise<R>,
): Promise<R> {
  if (!subscribed()) return run(undefined);
  const event: CallEvent = {
    version: 1,
    transaction:
      (db as { isTransaction?: unknown } | null)?.isTransaction === true ? 'caller' : 'library',
    attempts: 0,
  };
  return traceRun(channel, event, () => run(event), {
    succeeded(result) {
      event.outcome = result.replayed ? 'replayed' : 'executed';
    },
    failed(error) {
      event.outcome = outcomeOf(error);
      if (error instanceof IdempotencyConflictError) {
        event.conflictReason = error.reason;
        if (error.reason !== 'same_transaction' && event.transaction === 'library') {
          event.metInFlight = true;
        }
      }
    },
  });
}

/** Fills in what the validated options say about the call. */
export function describeCall(
  event: CallEvent | undefined,
  options: { scope: string; key: string; onConcurrent: 'wait' | 'reject' | 'optimistic' },
): void {
  if (!event) return;
  event.scope = options.scope;
  // Hashed on first read, once: the HMAC is most of what an event costs a call (about 2.5 us),
  // and a subscriber that never reads the hash (a counter; a span the sampler dropped) should not
  // pay it. An own enumerable accessor, so that spreading or serialising the event includes it.
  const { key } = options;
  let keyHash: string | undefined;
  Object.defineProperty(event, 'keyHash', {
    enumerable: true,
    configurable: true,
    get: () => {
      keyHash ??= hashIdempotencyKey(key);
      return keyHash;
    },
  });
  if (rawKeysIncluded()) event.key = key;
  event.onConcurrent = options.onConcurrent;
}

function outcomeOf(error: unknown): CallOutcome {
  if (error instanceof IdempotencyConflictError) return 'conflict';
  if (error instanceof IdempotencyKeyReusedError) return 'key_reused';
  if (error instanceof InvalidIdempotencyKeyError) return 'invalid_key';
  if (error instanceof InvalidIdempotencyOptionsError) return 'invalid_options';
  return 'failed';
}

/**
 * Runs `work`, and puts the milliseconds it took into `event[field]` when there is an event;
 * without one, it adds nothing to the call (not even a promise).
 */
export function timed<T>(
  event: CallEvent | undefined,
  field: 'claimMs' | 'fnMs' | 'recordMs',
  work: () => Promise<T>,
): Promise<T> {
  return event ? timeInto(event, field, work) : work();
}

// Awaited, so that a fn that returns a plain value (JavaScript callers) or throws at once is
// timed like any other.
async function timeInto<T>(
  event: CallEvent,
  field: 'claimMs' | 'fnMs' | 'recordMs',
  work: () => Promise<T>,
): Promise<T> {
  const startedAt = performance.now();
  try {
    return await work();
  } finally {
    event[field] = performance.now() - startedAt;
  }
}
