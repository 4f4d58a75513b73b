/**
 * The events operations publish on `node:diagnostics_channel`: a tracing channel per
 * `runOperation` call (the completer's included), and a plain channel for the lease of each
 * attempt. Nothing is built or hashed while no one subscribes.
 */
import { channel, type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import {
  hashIdempotencyKey,
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
} from '../index.ts';
import { OperationLeaseLostError, OperationPendingError } from './operation-errors.ts';

/**
 * The tracing channel of `runOperation` calls: `start`, `end`, `asyncStart`, `asyncEnd` and
 * `error`, with one {@link RunOperationEvent} per call.
 */
export const RUN_OPERATION_CHANNEL = 'idempotency-ledger:run-operation';

/** The channel of lease events: one {@link OperationLeaseEvent} per change of an attempt's lease. */
export const OPERATION_LEASE_CHANNEL = 'idempotency-ledger:operation-lease';

/**
 * How a `runOperation` call ended. Consumers of version 1 must tolerate values they do not know.
 */
export type OperationOutcome =
  /** This attempt ran the operation to its final response (`resumed` says if it took it over). */
  | 'finished'
  /** The operation had finished: its response was replayed. */
  | 'replayed'
  /** A 409: another attempt held the lease (`'reject'`, or the wait ran out). */
  | 'conflict'
  /** A 422: the key was used with another request or operation. */
  | 'key_reused'
  /** A 503: an external call failed without a final answer; the operation stays resumable. */
  | 'pending'
  /** A 409: a newer attempt took the operation over from this one. */
  | 'lease_lost'
  | 'invalid_key'
  | 'invalid_options'
  /** Anything else: a step threw, the database failed. The operation stays resumable. */
  | 'failed';

/**
 * What a subscriber of {@link RUN_OPERATION_CHANNEL} receives, read-only, complete by `asyncEnd`.
 * A public contract: while `version` is 1, fields are only added, and `outcome` may gain values.
 */
export interface RunOperationEvent {
  readonly version: 1;
  /** The operation's name, as given to `defineOperation`. */
  readonly operation: string;
  /** Set once the options are validated. */
  readonly scope?: string;
  /** HMAC-SHA256 of the key (as `withIdempotency`'s events), once the options are validated. */
  readonly keyHash?: string;
  readonly outcome?: OperationOutcome;
  /** True when this attempt took over an operation an earlier attempt had left unfinished. */
  readonly resumed?: boolean;
  /** The fencing token this attempt held, once it acquired the operation. */
  readonly fencingToken?: string;
  /** Times the call found another attempt holding the lease and waited. */
  readonly heldWaits: number;
  readonly durationMs?: number;
  readonly result?: unknown;
  readonly error?: unknown;
}

/**
 * A change to an attempt's lease. Kinds: `'acquired'` (a new operation, or one whose expired
 * response made its key new again), `'taken_over'` (an operation an earlier attempt left
 * unfinished: its lease ran out, or a failure released it), `'renewed'` (the heartbeat, every
 * third of `leaseMs`), `'released'` (this attempt failed and handed it back for a retry),
 * `'lost'` (a renewal found a newer attempt holding it), `'fenced_off'` (a step's or the final
 * write was refused: a newer attempt holds it). Consumers of version 1 must tolerate kinds they
 * do not know.
 */
export interface OperationLeaseEvent {
  readonly version: 1;
  readonly kind: 'acquired' | 'taken_over' | 'renewed' | 'released' | 'lost' | 'fenced_off';
  readonly operation: string;
  readonly scope: string;
  readonly keyHash: string;
  readonly fencingToken: string;
}

/** The run event as `runOperation` fills it in. */
export type RunOperationProgress = {
  -readonly [K in keyof RunOperationEvent]: RunOperationEvent[K];
};

const runChannel: TracingChannel<RunOperationProgress, RunOperationProgress> =
  tracingChannel(RUN_OPERATION_CHANNEL);
const leaseChannel = channel(OPERATION_LEASE_CHANNEL);

/**
 * Runs one `runOperation` call, traced when anyone subscribes; `run` gets the event to fill in
 * (`undefined` when no one does).
 */
export function traceRunOperation<R extends { replayed: boolean }>(
  operation: string,
  run: (event: RunOperationProgress | undefined) => Promise<R>,
): Promise<R> {
  if (!runChannel.hasSubscribers) return run(undefined);
  const event: RunOperationProgress = { version: 1, operation, heldWaits: 0 };
  const startedAt = performance.now();
  return runChannel.tracePromise(async () => {
    try {
      const result = await run(event);
      event.outcome = result.replayed ? 'replayed' : 'finished';
      return result;
    } catch (error) {
      event.outcome = outcomeOf(error);
      throw error;
    } finally {
      event.durationMs = performance.now() - startedAt;
    }
  }, event);
}

/** Fills in the validated scope and key; the key's hash is computed when first read. */
export function describeOperationCall(
  event: RunOperationProgress | undefined,
  ref: { scope: string; key: string },
): void {
  if (!event) return;
  event.scope = ref.scope;
  defineKeyHash(event, ref.key);
}

/** Publishes a lease event, when anyone subscribes. */
export function publishLeaseEvent(
  kind: OperationLeaseEvent['kind'],
  attempt: { operation: string; scope: string; key: string; fencingToken: string },
): void {
  if (!leaseChannel.hasSubscribers) return;
  const { operation, scope, key, fencingToken } = attempt;
  const event = { version: 1, kind, operation, scope, fencingToken } as OperationLeaseEvent;
  defineKeyHash(event, key);
  leaseChannel.publish(event);
}

// As withIdempotency's events: hashed on first read, an own enumerable accessor so that
// spreading or serialising the event includes it.
function defineKeyHash(event: object, key: string): void {
  let keyHash: string | undefined;
  Object.defineProperty(event, 'keyHash', {
    enumerable: true,
    configurable: true,
    get: () => {
      keyHash ??= hashIdempotencyKey(key);
      return keyHash;
    },
  });
}

function outcomeOf(error: unknown): OperationOutcome {
  if (error instanceof IdempotencyConflictError) return 'conflict';
  if (error instanceof IdempotencyKeyReusedError) return 'key_reused';
  if (error instanceof OperationPendingError) return 'pending';
  if (error instanceof OperationLeaseLostError) return 'lease_lost';
  if (error instanceof InvalidIdempotencyKeyError) return 'invalid_key';
  if (error instanceof InvalidIdempotencyOptionsError) return 'invalid_options';
  return 'failed';
}
