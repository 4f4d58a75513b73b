import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import {
  fingerprintRequest,
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  type Jsonified,
  openStoredJson,
  type ResponseEncryption,
  sealStoredJson,
} from '../index.ts';
import type { Operation } from './define-operation.ts';
import { startHeartbeat } from './lease-heartbeat.ts';
import { createOperationContext, OperationFinished } from './operation-context.ts';
import { OperationLeaseLostError } from './operation-errors.ts';
import {
  describeOperationCall,
  publishLeaseEvent,
  type RunOperationProgress,
  traceRunOperation,
} from './operation-events.ts';
import { type ParsedRunOptions, parseRunOptions } from './operation-options.ts';
import {
  type Acquired,
  acquireOperation,
  type OperationRef,
  recordedSteps,
  releaseLease,
} from './operation-store.ts';

/** Who holds an operation's lease, as lease events tell it. */
type LeaseHolder = { operation: string; scope: string; key: string; fencingToken: string };

// With 'reject', a duplicate waits this long for a row lock, as withIdempotency's claim does.
const REJECT_WAIT_MS = 1;

/** Options of {@link runOperation}. */
export interface RunOperationOptions<Req> {
  /** As in `withIdempotency`: the principal and the operation, 1 to 255 characters. */
  scope: string;
  /** The client's key: 1 to 255 printable ASCII characters. */
  key: string | readonly string[] | undefined;
  /** The request: fingerprinted with the operation's name (a key reused with another request, or by another operation, is a 422) and stored, so that an abandoned operation can be resumed without its client. JSON. */
  request: Req;
  /** How long an attempt holds the operation without renewing; renewed every third of it. Default 30 s. */
  leaseMs?: number;
  /**
   * How long the operation replays once finished. Default 24 h. Stored at its start: whichever
   * attempt finishes it (a retry, the completer) keeps it that long.
   */
  ttlMs?: number;
  /** A duplicate while another attempt holds the lease: wait for it (default), or 409 at once. */
  onConcurrent?: 'wait' | 'reject';
  /** Longest wait with `'wait'`. Default 10 s. */
  waitTimeoutMs?: number;
  /** Postgres schema of the ledger (and the operation tables). Default `idempotency`. */
  schema?: string;
  /**
   * Encrypts what the operation stores at rest: its request, each step's result and its final
   * response, as `withIdempotency`'s option does. Give `resumeAbandonedOperations` the same.
   *
   * @example
   * ```ts
   * await runOperation(db, createPayment, { scope, key, request: body, encryption });
   * ```
   */
  encryption?: ResponseEncryption;
}

/** What {@link runOperation} returns. */
export interface OperationResult<T> {
  response: T;
  /** True when the operation had finished already and its response was replayed. */
  replayed: boolean;
  /** True when this attempt resumed an operation an earlier attempt left unfinished. */
  resumed: boolean;
}

/**
 * Runs `operation` at most to completion once per (scope, key): the first attempt runs its steps;
 * a retry while it runs waits for it (or gets a 409); a retry after it finished replays its final
 * response; a retry after it was abandoned (its lease ran out, or a step failed) resumes it from
 * its last recorded step, with a higher fencing token that shuts the old attempt out.
 *
 * @throws {InvalidIdempotencyKeyError} (400), {@link IdempotencyKeyReusedError} (422),
 *   `IdempotencyConflictError` (409) as `withIdempotency` does.
 * @throws {OperationPendingError} (503) when an external call failed without a final answer.
 * @throws {OperationLeaseLostError} (409) when another attempt took the operation over.
 * @throws {InvalidIdempotencyOptionsError} for a bad option, before anything is written;
 *   `LedgerSchemaError` when the schema was not migrated (to migration 00002).
 * @throws Whatever a step throws, unchanged; the operation stays resumable.
 *
 * @example
 * ```ts
 * const { response } = await runOperation(db, createPayment, {
 *   scope: `merchant:${merchantId}:create-payment`,
 *   key: idempotencyKey,
 *   request: body,
 * });
 * ```
 */
export async function runOperation<DB, Req, Res>(
  db: Kysely<DB>,
  operation: Operation<DB, Req, Res>,
  options: RunOperationOptions<Req>,
): Promise<OperationResult<Jsonified<Res>>> {
  const name = String((operation as { name?: unknown } | undefined)?.name);
  return traceRunOperation(name, (event) => runTraced(db, operation, options, event));
}

async function runTraced<DB, Req, Res>(
  db: Kysely<DB>,
  operation: Operation<DB, Req, Res>,
  options: RunOperationOptions<Req>,
  event: RunOperationProgress | undefined,
): Promise<OperationResult<Jsonified<Res>>> {
  const parsed = parseRunOptions(options);
  const ref: OperationRef = { schema: parsed.schema, scope: parsed.scope, key: parsed.key };
  describeOperationCall(event, ref);
  const { encryption } = parsed;
  const bound = (kind: 'operation_request' | 'operation_response') => ({ ...ref, kind });
  const attempt = {
    name: operation.name,
    // The operation's name is part of the fingerprint: another operation given the same scope and
    // key is a key reused (422), never a replay of this one's response nor a resume of its steps.
    fingerprint: fingerprintRequest({ operation: operation.name, request: parsed.request ?? null }),
    requestJson: sealStoredJson(
      parsed.request === undefined ? null : JSON.stringify(parsed.request),
      encryption,
      bound('operation_request'),
    ),
    leaseMs: parsed.leaseMs,
    ttlMs: parsed.ttlMs,
  };
  const deadline = performance.now() + parsed.waitTimeoutMs;
  for (let wait = 1; ; wait++) {
    // A row locked by an attempt committing to it is waited for only as long as this call may.
    const waitMs =
      parsed.onConcurrent === 'reject' ? REJECT_WAIT_MS : Math.max(1, deadline - performance.now());
    const acquired: Acquired = await acquireOperation(db, ref, attempt, waitMs);
    switch (acquired.outcome) {
      case 'finished':
        return {
          response: decode(
            openStoredJson(acquired.response, encryption, bound('operation_response')),
          ),
          replayed: true,
          resumed: false,
        };
      case 'mismatch':
        throw new IdempotencyKeyReusedError({ scope: ref.scope, key: ref.key });
      case 'acquired': {
        const { fencingToken, resumed } = acquired;
        if (event) Object.assign(event, { fencingToken, resumed });
        const holder = { operation: operation.name, scope: ref.scope, key: ref.key, fencingToken };
        publishLeaseEvent(resumed ? 'taken_over' : 'acquired', holder);
        return execute(db, operation, ref, parsed, holder, resumed);
      }
      case 'held': {
        const left = deadline - performance.now();
        if (parsed.onConcurrent === 'reject' || left <= 0) {
          throw new IdempotencyConflictError({
            scope: ref.scope,
            key: ref.key,
            reason: parsed.onConcurrent === 'reject' ? 'in_flight' : 'wait_timeout',
            retryAfterMs: Math.max(1000, acquired.leaseRemainingMs),
          });
        }
        if (event) event.heldWaits += 1;
        // Backs off, but never past the moment the holder's lease runs out.
        const pause = Math.min(25 * 2 ** Math.min(wait, 6), acquired.leaseRemainingMs + 5, left);
        await sleep(Math.max(5, pause));
      }
    }
  }
}

async function execute<DB, Req, Res>(
  db: Kysely<DB>,
  operation: Operation<DB, Req, Res>,
  ref: OperationRef,
  parsed: ParsedRunOptions,
  holder: LeaseHolder,
  resumed: boolean,
): Promise<OperationResult<Jsonified<Res>>> {
  const { fencingToken } = holder;
  const lost = new AbortController();
  let renewalFoundLost = false;
  const heartbeat = startHeartbeat(db, ref, fencingToken, parsed.leaseMs, {
    onRenewed: () => publishLeaseEvent('renewed', holder),
    onLost: () => {
      renewalFoundLost = true;
      publishLeaseEvent('lost', holder);
      lost.abort(new OperationLeaseLostError({ scope: ref.scope, key: ref.key }));
    },
  });
  try {
    const recorded = resumed
      ? openSteps(await recordedSteps(db, ref), ref, parsed.encryption)
      : new Map<string, string | null>();
    const op = createOperationContext({
      db,
      ref,
      fencingToken,
      resumed,
      recorded,
      lease: lost,
      encryption: parsed.encryption,
    });
    let returned: Res;
    try {
      returned = await operation.run(op, parsed.request as Req);
    } catch (error) {
      if (error instanceof OperationFinished) {
        return { response: decode(error.json), replayed: false, resumed };
      }
      throw error;
    }
    const finished = op.finished();
    if (finished) return { response: decode(finished.json), replayed: false, resumed };
    // `run` returned without finish(): its return value is the response, recorded on its own.
    const response = await op.finish(async () => returned);
    return { response: response as Jsonified<Res>, replayed: false, resumed };
  } catch (error) {
    // The heartbeat stops first, and a renewal it already sent lands first: landing after the
    // release, it would hold the lease again, and the retry would wait it out.
    await heartbeat.stop();
    if (!(error instanceof OperationLeaseLostError)) {
      const released = await releaseLease(db, ref, fencingToken).then(
        () => true,
        () => false,
      );
      if (released) publishLeaseEvent('released', holder);
    } else if (!renewalFoundLost) {
      // Not the heartbeat's finding: a fenced write was refused.
      publishLeaseEvent('fenced_off', holder);
    }
    throw error;
  } finally {
    // Awaited: a renewal in flight holds a pooled connection, and a call that has returned must
    // leave none in use (a caller may destroy the pool next).
    await heartbeat.stop();
  }
}

/** The recorded steps' results in clear (decrypted when they were stored encrypted). */
function openSteps(
  stored: Map<string, string | null>,
  ref: OperationRef,
  encryption: ResponseEncryption | undefined,
): Map<string, string | null> {
  const opened = new Map<string, string | null>();
  for (const [step, result] of stored) {
    opened.set(step, openStoredJson(result, encryption, { ...ref, kind: 'operation_step', step }));
  }
  return opened;
}

function decode<T>(json: string | null): T {
  return (json === null ? undefined : JSON.parse(json)) as T;
}
