import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely, Transaction } from 'kysely';
import { type BatchEvent, traceBatch } from './batch-events.ts';
import {
  type IdempotencyBatchItem,
  type IdempotencyBatchOptions,
  type MAX_BATCH_ITEMS,
  resolveBatchOptions,
  type UniqueItem,
  uniqueItems,
} from './batch-input.ts';
import { IdempotencyError, InvalidIdempotencyOptionsError } from './errors.ts';
import { assertKysely } from './internal/assert-kysely.ts';
import { isRetryableTransactionError } from './internal/postgres-errors.ts';
import type { Jsonified } from './jsonified.ts';
import type { LedgerEntry } from './ledger.ts';
import { claimKeys, recordResponses } from './ledger-batch.ts';
import { sealLedgerResponse } from './ledger-response-sealing.ts';
import { DEFAULT_MAX_ATTEMPTS, fingerprintOrThrow, type ResolvedOptions } from './options.ts';
import { encodeResponse } from './response-codec.ts';
import { backoffMs, type IdempotentTransaction, replay } from './with-idempotency.ts';

/**
 * What became of one item of a batch: its response, run now (`'executed'`) or stored by an earlier
 * call (`'replayed'`), or `'refused'` with the error `withIdempotency` would have thrown for it
 * alone: `IdempotencyKeyReusedError` (another request), `ResponseDecryptionError`.
 *
 * @example
 * ```ts
 * results.forEach((result, i) => {
 *   if (result.outcome === 'refused') report(rows[i], result.error.code); // e.g. 'key_reused'
 *   else confirm(rows[i], result.response);
 * });
 * ```
 */
export type BatchItemResult<T> =
  | { outcome: 'executed'; response: T }
  | { outcome: 'replayed'; response: T }
  | { outcome: 'refused'; error: IdempotencyError };

// biome-ignore lint/suspicious/noExplicitAny: any database type; K carries the caller's.
type AnyKysely = Kysely<any>;

/**
 * Runs `fn` at most once per (scope, key) for many keys at once, in ONE transaction: every key is
 * claimed in one statement, `fn` runs once with the items not processed before (`pending`), and
 * their responses are stored in one statement, so a batch costs four round trips plus `fn`'s
 * instead of four per item. Items processed before replay their stored response, as
 * `withIdempotency` replays it (the same request check, the same `encryption`).
 *
 * - `fn` gets the pending items in the order of `items`, and returns one response per pending
 *   item, in the order of `pending`.
 * - An item whose key appears earlier in the batch is the same item: it is not passed to `fn`
 *   again, and gets the first one's response as a replay (or a 422 for another request).
 * - All or nothing: if `fn` throws, or one response cannot be stored, nothing of the batch is
 *   committed. A serialization failure or deadlock runs the whole batch again (`maxAttempts`).
 * - The keys are claimed in sorted order, so overlapping batches wait for each other without
 *   deadlocking; a batch holds all its keys until it commits, so keep batches short.
 * - Only the library's own transaction: pass a `Kysely` instance, not a `Transaction`.
 *
 * @param items - 1 to {@link MAX_BATCH_ITEMS} items, each with a valid key.
 * @returns One result per item, in the order of `items`.
 * @throws {InvalidIdempotencyKeyError} for an item's missing or malformed key, its message naming
 *   the item (`items.2.key: ...`), never the key; nothing is sent.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, an empty or oversized batch, a
 *   non-JSON request (`issues` such as `items.3.request: ...`), or `fn` returning other than one
 *   response per pending item.
 * @throws {IdempotencyConflictError} (`wait_timeout`, no `key`) when the batch waited longer than
 *   `waitTimeoutMs` for transactions holding its keys; nothing is committed.
 * @throws {UnstorableResponseError} when a response cannot be stored; nothing is committed.
 * @throws Whatever `fn` throws, unchanged; nothing is committed.
 *
 * @example
 * ```ts
 * const results = await withIdempotencyBatch(
 *   db,
 *   { scope: 'payments-import' },
 *   rows.map((row) => ({ key: row.paymentId, request: row, row })),
 *   async (trx, pending) => {
 *     const inserted = await trx
 *       .insertInto('payments')
 *       .values(pending.map(({ row }) => ({ id: row.paymentId, amount: row.amount })))
 *       .returning(['id'])
 *       .execute();
 *     return inserted.map(({ id }) => ({ paymentId: id }));
 *   },
 * );
 * ```
 */
export function withIdempotencyBatch<K extends AnyKysely, I extends IdempotencyBatchItem, R>(
  db: K,
  options: IdempotencyBatchOptions,
  items: readonly I[],
  fn: (trx: IdempotentTransaction<K>, pending: readonly I[]) => Promise<readonly R[]>,
): Promise<BatchItemResult<Jsonified<R>>[]> {
  return traceBatch((event) =>
    runBatch(db, options, items, fn as unknown as BatchFn<IdempotencyBatchItem>, event),
  ) as Promise<BatchItemResult<Jsonified<R>>[]>;
}

type BatchFn<I> = (trx: Transaction<unknown>, pending: readonly I[]) => Promise<readonly unknown[]>;

async function runBatch<I extends IdempotencyBatchItem>(
  db: AnyKysely,
  options: IdempotencyBatchOptions,
  items: readonly I[],
  fn: BatchFn<I>,
  event: BatchEvent | undefined,
): Promise<BatchItemResult<unknown>[]> {
  assertKysely(db, 'withIdempotencyBatch');
  const base = resolveBatchOptions(options, db.isTransaction, typeof fn);
  const { unique, firstOf } = uniqueItems(base, items);
  if (event) {
    event.scope = base.scope;
    event.size = items.length;
  }
  const maxAttempts = base.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    if (event) event.attempts = attempt;
    try {
      const builder = (db as Kysely<unknown>).transaction();
      const outcomes = await (base.isolationLevel
        ? builder.setIsolationLevel(base.isolationLevel)
        : builder
      ).execute((trx) => claimAndExecute(trx, base, unique, fn));
      return items.map((item, index) => {
        const first = firstOf[index] ?? index;
        const outcome = outcomes.get(first);
        if (!outcome) throw new Error('a batch item has no outcome');
        if (first === index) return withoutEntry(outcome);
        // A repeat of a key earlier in the batch replays that item's entry, as a second call would.
        const entry: LedgerEntry = { fingerprint: outcome.fingerprint, response: outcome.stored };
        const repeat = { ...base, key: item.key, fingerprint: fingerprintOrThrow(item.request) };
        return withoutEntry(settleReplay(entry, repeat));
      });
    } catch (error) {
      if (attempt >= maxAttempts || !isRetryableTransactionError(error)) throw error;
      await sleep(backoffMs(attempt));
    }
  }
}

/** An item's outcome, with what its entry holds (so that a repeat of its key replays from it). */
type Outcome = BatchItemResult<unknown> & { fingerprint: Buffer | null; stored: string | null };

async function claimAndExecute<I extends IdempotencyBatchItem>(
  trx: Transaction<unknown>,
  base: ResolvedOptions,
  unique: readonly (UniqueItem<I> & { index: number })[],
  fn: BatchFn<I>,
): Promise<Map<number, Outcome>> {
  const { schema, scope, ttlMs, waitTimeoutMs } = base;
  const claims = unique.map(({ options, token }) => ({
    key: options.key,
    fingerprint: options.fingerprint,
    inFlightToken: token,
  }));
  const claimed = await claimKeys(trx, schema, { scope, ttlMs, waitMs: waitTimeoutMs, claims });
  const outcomes = new Map<number, Outcome>();
  const pending: (UniqueItem<I> & { index: number })[] = [];
  unique.forEach((candidate, position) => {
    const claim = claimed.entries[position];
    if (!claim) throw new Error('the batch claim returned no row for a key');
    if (claim.claimed) pending.push(candidate);
    else outcomes.set(candidate.index, settleReplay(claim.entry, candidate.options));
  });
  if (pending.length === 0) return outcomes;
  // Claimed in key order; handled in the caller's order (a queue's messages, as delivered).
  pending.sort((a, b) => a.index - b.index);
  const responses = await fn(
    trx,
    pending.map(({ item }) => item),
  );
  if (!Array.isArray(responses) || responses.length !== pending.length) {
    throw new InvalidIdempotencyOptionsError({
      message: `withIdempotencyBatch: fn must return an array of one response per pending item (${pending.length})`,
      issues: ['fn: must return one response per pending item'],
    });
  }
  const records = pending.map((candidate, position) => {
    const { options, token } = candidate;
    const encoded = encodeResponse(responses[position], options);
    const { stored } = sealLedgerResponse(encoded.json, options.fingerprint, options);
    outcomes.set(candidate.index, {
      outcome: 'executed',
      response: encoded.response,
      fingerprint: options.fingerprint,
      stored,
    });
    return { key: options.key, inFlightToken: token, responseJson: stored };
  });
  await recordResponses(trx, schema, { scope, ttlMs, records }, claimed.xid ?? '');
  return outcomes;
}

function withoutEntry(outcome: Outcome): BatchItemResult<unknown> {
  if (outcome.outcome === 'refused') return { outcome: 'refused', error: outcome.error };
  return { outcome: outcome.outcome, response: outcome.response };
}

/** A replay of `entry` for the item, or the error its own `withIdempotency` would have thrown. */
function settleReplay(entry: LedgerEntry, options: ResolvedOptions): Outcome {
  const held = { fingerprint: entry.fingerprint, stored: entry.response };
  try {
    const { response } = replay(entry, options, undefined);
    return { outcome: 'replayed', response, ...held };
  } catch (error) {
    if (!(error instanceof IdempotencyError)) throw error;
    return { outcome: 'refused', error, ...held };
  }
}
