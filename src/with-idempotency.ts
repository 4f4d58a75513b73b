import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely, Transaction } from 'kysely';
import type { input as zodInput, output as zodOutput } from 'zod';
import { type CallEvent, describeCall, timed, traceCall } from './call-events.ts';
import {
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  UnstorableResponseError,
} from './errors.ts';
import { executeAndRecord, type Recorded } from './execute-and-record.ts';
import { assertKysely } from './internal/assert-kysely.ts';
import { isRetryableTransactionError } from './internal/postgres-errors.ts';
import type { Jsonified } from './jsonified.ts';
import {
  abortTransaction,
  type ClaimedEntry,
  type ClaimResult,
  claimKey,
  inFlightToken,
  type LedgerEntry,
  lookupEntry,
  recordResponse,
} from './ledger.ts';
import { assertOpenable, type OpenedEntry, openLedgerEntry } from './ledger-response-sealing.ts';
import {
  DEFAULT_MAX_ATTEMPTS,
  type IdempotencyOptions,
  type ResolvedOptions,
  type ResponseSchema,
  resolveOptions,
} from './options.ts';
import { executeThenRecord, KeyTaken, runsOptimisticFn } from './record-last.ts';
import { replayCacheId } from './replay-cache.ts';
import { decodeResponse } from './response-codec.ts';

/** What {@link withIdempotency} returns. */
export interface IdempotencyResult<T> {
  /** The response: `fn`'s return value as stored, equal on the first call and on every replay. */
  response: T;
  /** True when `fn` did not run and the stored response of an earlier call was returned. */
  replayed: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: any database type; K carries the caller's.
type AnyKysely = Kysely<any>;
// `any`, not `infer`: inferring a database type through a ControlledTransaction fails.
// biome-ignore lint/suspicious/noExplicitAny: any database type; K carries the caller's.
type AnyTransaction = Transaction<any>;

/**
 * The transaction `fn` receives: yours when you pass a `Transaction` (a `ControlledTransaction`
 * keeps its savepoint methods), otherwise the one the library opened on your `Kysely` instance.
 */
export type IdempotentTransaction<K> = K extends AnyTransaction
  ? K
  : Transaction<K extends Kysely<infer DB> ? DB : never>;

// With 'reject', a duplicate waits this long for the first call's transaction (lock_timeout = 0
// would mean "wait forever").
const REJECT_WAIT_MS = 1;

/**
 * Runs `fn` at most once per (scope, key): the first call executes it and stores its return value
 * in the same transaction as `fn`'s writes; later calls with the same key replay that value. (With
 * `onConcurrent: 'optimistic'`, a duplicate in flight runs `fn` too, and rolls back all it wrote:
 * one run commits.)
 *
 * - Pass a `Kysely` instance and the library runs its own transaction: it commits `fn`'s writes
 *   and the ledger entry together, and retries the whole transaction on serialization failures
 *   and deadlocks (`fn` then runs again; only one attempt commits).
 * - Pass a `Transaction` and everything happens inside it: your commit or rollback decides for
 *   both. If `fn` fails, or its response cannot be stored, your transaction is left aborted, so
 *   that it can only roll back (wrap the call in a savepoint to carry on after a failure).
 *
 * @param db - A `Kysely` instance, or a `Transaction` you opened.
 * @param options - Scope, key and request; see {@link IdempotencyOptions}.
 * @param fn - Your business work, given the transaction to run it in. Its return value (JSON) is
 *   the response.
 * @throws {InvalidIdempotencyKeyError} (400) for a missing or malformed key.
 * @throws {InvalidIdempotencyOptionsError} for any other invalid option, or a non-JSON `request`.
 * @throws {IdempotencyKeyReusedError} (422) when the key was used with a different request.
 * @throws {IdempotencyConflictError} (409) when a call with the same key is in flight and
 *   `onConcurrent` is `'reject'`, or the wait for it exceeded `waitTimeoutMs`.
 * @throws {UnstorableResponseError} when `fn`'s return value cannot be stored; nothing is committed.
 * @throws {StoredResponseInvalidError} when a stored response no longer matches `responseSchema`.
 * @throws {ResponseDecryptionError} when a stored response is encrypted (the `encryption` option)
 *   and cannot be decrypted: no key, an unknown key, or altered; nothing is executed.
 * @throws {LedgerSchemaError} when the ledger has not been migrated into `schema`.
 * @throws Whatever `fn` throws, unchanged; nothing is committed.
 * @throws Database and driver errors (a lost connection, a statement timeout, a serialization
 *   failure once `maxAttempts` is spent), unchanged, with their SQLSTATE in `code`.
 *
 * @example
 * ```ts
 * const { response, replayed } = await withIdempotency(
 *   db,
 *   { scope: `merchant:${merchantId}`, key: idempotencyKey, request: body },
 *   async (trx) => {
 *     const payment = await trx
 *       .insertInto('payments')
 *       .values({ merchant_id: merchantId, amount: body.amount })
 *       .returning(['id', 'amount'])
 *       .executeTakeFirstOrThrow();
 *     return { status: 201, body: payment };
 *   },
 * );
 * ```
 */
export function withIdempotency<K extends AnyKysely, S extends ResponseSchema>(
  db: K,
  options: IdempotencyOptions & { responseSchema: S },
  fn: (trx: IdempotentTransaction<K>) => Promise<zodInput<S>>,
): Promise<IdempotencyResult<zodOutput<S>>>;
export function withIdempotency<K extends AnyKysely, R>(
  db: K,
  options: IdempotencyOptions & { responseSchema?: undefined },
  fn: (trx: IdempotentTransaction<K>) => Promise<R>,
): Promise<IdempotencyResult<Jsonified<R>>>;
export function withIdempotency<K extends AnyKysely>(
  db: K,
  options: IdempotencyOptions,
  fn: (trx: IdempotentTransaction<K>) => Promise<unknown>,
): Promise<IdempotencyResult<unknown>>;
export function withIdempotency(
  db: AnyKysely,
  options: IdempotencyOptions,
  fn: (trx: never) => Promise<unknown>,
): Promise<IdempotencyResult<unknown>> {
  return traceCall(db, (event) => runCall(db, options, fn, event));
}

async function runCall(
  db: AnyKysely,
  options: IdempotencyOptions,
  fn: (trx: never) => Promise<unknown>,
  event: CallEvent | undefined,
): Promise<IdempotencyResult<unknown>> {
  assertKysely(db, 'withIdempotency');
  const resolved = resolveOptions(options);
  describeCall(event, resolved);
  if (typeof fn !== 'function') {
    throw new InvalidIdempotencyOptionsError({
      message: 'withIdempotency needs a function to run',
      issues: ['fn: must be a function'],
    });
  }
  const run = fn as (trx: Transaction<unknown>) => Promise<unknown>;
  if (db.isTransaction) {
    if (resolved.isolationLevel !== undefined || resolved.maxAttempts !== undefined) {
      throw new InvalidIdempotencyOptionsError({
        message:
          'isolationLevel and maxAttempts apply to the library-owned transaction; ' +
          'your transaction has its own isolation level, and only you can retry it',
        issues: ['isolationLevel', 'maxAttempts'],
      });
    }
    if (resolved.onConcurrent === 'optimistic') {
      throw new InvalidIdempotencyOptionsError({
        message:
          "onConcurrent: 'optimistic' needs the library's own transaction: a call that loses " +
          'the race rolls back everything fn wrote, and only your own code can roll back yours',
        issues: ['onConcurrent'],
      });
    }
    return runInCallerTransaction(db as Transaction<unknown>, resolved, run, event);
  }
  return runInOwnTransaction(db as Kysely<unknown>, resolved, run, event);
}

type Attempt = ({ executed: true } & Recorded) | { executed: false; entry: LedgerEntry };

async function runInOwnTransaction(
  db: Kysely<unknown>,
  options: ResolvedOptions,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event: CallEvent | undefined,
): Promise<IdempotencyResult<unknown>> {
  const { replayCache } = options;
  const cacheId = replayCache && replayCacheId(db, options.schema, options.scope, options.key);
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    let ranTransaction = false;
    try {
      const cached = cacheId && replayCache.find(cacheId);
      if (cached) return replayCached(cached, options, event);

      // A replay is one statement outside any transaction. A miss costs this extra round trip on
      // a first execution, which is the price of cheap replays during a retry storm.
      const lookedUpAtMs = performance.now();
      const stored = await lookupEntry(db, options.schema, options.scope, options.key);
      if (event) event.expiredEntry = stored === 'expired';
      if (stored && stored !== 'expired') {
        // Counted from before the statement was sent: the cached copy expires no later than the
        // entry does by the database clock. Decrypted before it is cached: the cache holds
        // responses in clear.
        const deadlineMs = lookedUpAtMs + stored.remainingMs;
        return replay(stored, options, event, (opened) => {
          if (cacheId) replayCache.remember(cacheId, opened, deadlineMs);
        });
      }

      if (event) {
        event.attempts += 1;
        // The timings describe the last attempt only.
        event.claimMs = event.fnMs = event.recordMs = undefined;
      }
      ranTransaction = true;
      const builder = db.transaction();
      const outcome = await (options.isolationLevel
        ? builder.setIsolationLevel(options.isolationLevel)
        : builder
      ).execute(
        async (trx): Promise<Attempt> =>
          options.onConcurrent === 'optimistic'
            ? { executed: true, ...(await executeThenRecord(trx, options, fn, event)) }
            : claimAndExecute(trx, options, fn, event),
      );
      if (!outcome.executed) return replay(outcome.entry, options, event);
      if (cacheId) {
        const { json: response, sealed } = outcome;
        const entry = { fingerprint: options.fingerprint, response, sealed };
        replayCache.remember(cacheId, entry, outcome.recordedAtMs + options.ttlMs);
      }
      return { response: outcome.response, replayed: false };
    } catch (error) {
      // Only a failure inside the transaction can have lost a race: a replay refused before it
      // (a reused key) is final.
      if (options.onConcurrent === 'optimistic' && ranTransaction && !endedByFn(error)) {
        // fn ran without a claim, and its transaction rolled back. If another call committed the
        // key meanwhile, whatever failed here (the key taken at the record, fn's own unique key
        // violated by the other call's writes, a serialization failure) lost a race to it: replay.
        const winner = await lookupEntry(db, options.schema, options.scope, options.key).catch(
          () => undefined,
        );
        if (winner && winner !== 'expired') {
          if (event) event.metInFlight = true;
          return replay(winner, options, event);
        }
        if (error instanceof KeyTaken) {
          // The entry that took the key is gone: it expired or was deleted since, or it was this
          // transaction's own (a nested call for the key through another Kysely instance).
          if (attempt >= maxAttempts) {
            const { scope, key } = options;
            throw new IdempotencyConflictError({ scope, key, reason: 'same_transaction' });
          }
          continue;
        }
      }
      if (attempt >= maxAttempts || !isRetryableTransactionError(error)) throw error;
      await sleep(backoffMs(attempt));
    }
  }
}

async function runInCallerTransaction(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event: CallEvent | undefined,
): Promise<IdempotencyResult<unknown>> {
  const claim = await timed(event, 'claimMs', () => claimFor(trx, options));
  if (!claim.claimed) return replay(claim.entry, options, event);
  try {
    const { response } = await executeOnClaim(trx, options, claim, fn, event);
    return { response, replayed: false };
  } catch (error) {
    await abortTransaction(trx);
    throw error;
  }
}

/** Claim, then run fn and record its response; or hand back the entry that already holds the key. */
async function claimAndExecute(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event: CallEvent | undefined,
): Promise<Attempt> {
  const claim = await timed(event, 'claimMs', () => claimFor(trx, options));
  // Not at the lookup, but at the claim: committed by a duplicate since, or after waiting for it.
  if (event) event.metInFlight = !claim.claimed;
  if (!claim.claimed) return { executed: false, entry: claim.entry };
  return { executed: true, ...(await executeOnClaim(trx, options, claim, fn, event)) };
}

type Claim = Extract<ClaimResult, { claimed: true }> & ClaimedEntry;

async function claimFor(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
): Promise<Claim | Extract<ClaimResult, { claimed: false }>> {
  const { schema, scope, key, ttlMs, onConcurrent } = options;
  const token = inFlightToken(schema, scope, key);
  // An optimistic call running its fn for this key in this very transaction cannot be waited
  // for, and has nothing to replay yet: as for a claim of its own, refuse.
  if (runsOptimisticFn(trx, token)) {
    throw new IdempotencyConflictError({ scope, key, reason: 'same_transaction' });
  }
  const claim = await claimKey(trx, schema, {
    scope,
    key,
    inFlightToken: token,
    fingerprint: options.fingerprint,
    ttlMs: options.ttlMs,
    waitMs: onConcurrent === 'reject' ? REJECT_WAIT_MS : options.waitTimeoutMs,
    onConcurrent,
  });
  return claim.claimed ? { ...claim, scope, key, ttlMs, inFlightToken: token } : claim;
}

/** Runs fn in the transaction that holds the claim, and stores what it returned on that row. */
function executeOnClaim(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
  claim: Claim,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event: CallEvent | undefined,
): Promise<Recorded> {
  return executeAndRecord(trx, options, fn, event, (responseJson) =>
    recordResponse(trx, options.schema, claim, claim.xid, responseJson),
  );
}

/**
 * Replays an entry of the ledger: the request first (a reused key is a 422 even for a caller who
 * cannot decrypt the response), then the response opened, handed to `remember`, and decoded.
 *
 * @throws {ResponseDecryptionError} when it is encrypted and cannot be decrypted.
 */
export function replay(
  entry: LedgerEntry,
  options: ResolvedOptions,
  event: CallEvent | undefined,
  remember?: (opened: OpenedEntry) => void,
): IdempotencyResult<unknown> {
  if (event) event.replayedFrom = 'ledger';
  assertSameRequest(entry.fingerprint, options);
  const opened = openLedgerEntry(entry, options);
  remember?.(opened);
  return { response: decodeResponse(opened.response, options), replayed: true };
}

/** Replays an entry of the replay cache, which holds it in clear. */
function replayCached(
  entry: OpenedEntry,
  options: ResolvedOptions,
  event: CallEvent | undefined,
): IdempotencyResult<unknown> {
  if (event) event.replayedFrom = 'replay_cache';
  assertSameRequest(entry.fingerprint, options);
  assertOpenable(entry, options);
  return { response: decodeResponse(entry.response, options), replayed: true };
}

function assertSameRequest(stored: Buffer | null, options: ResolvedOptions): void {
  if (!sameFingerprint(stored, options.fingerprint)) {
    throw new IdempotencyKeyReusedError({ scope: options.scope, key: options.key });
  }
}

function sameFingerprint(stored: Buffer | null, given: Buffer | null): boolean {
  if (stored === null || given === null) return stored === given;
  return stored.equals(given);
}

/**
 * fn sent COMMIT or ROLLBACK itself: its writes may be durable with no entry. Replaying an entry
 * another call recorded meanwhile would hide that second effect from the caller.
 */
function endedByFn(error: unknown): boolean {
  return error instanceof UnstorableResponseError && error.reason === 'transaction_ended';
}

/** Exponential backoff with full jitter, so retried transactions do not collide again in step. */
export function backoffMs(attempt: number): number {
  return Math.random() * Math.min(1000, 10 * 2 ** attempt);
}
