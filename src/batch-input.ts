/**
 * What `withIdempotencyBatch` takes, checked before anything is sent: its options, by
 * `withIdempotency`'s rules, and its items, each key and request as a single call checks them.
 */
import { InvalidIdempotencyKeyError, InvalidIdempotencyOptionsError } from './errors.ts';
import { parseOptions } from './internal/parse-options.ts';
import { inFlightToken } from './ledger.ts';
import {
  fingerprintOrThrow,
  type IdempotencyOptions,
  optionsSchema,
  parseKey,
  type ResolvedOptions,
} from './options.ts';

/** Most items one batch may hold: its claim and its record are one statement each. */
export const MAX_BATCH_ITEMS = 1000;

/**
 * Options of {@link withIdempotencyBatch}: those of `withIdempotency` that apply to every item
 * alike. `key` and `request` belong to each item; `onConcurrent` is always `'wait'`, and there is
 * no `replayCache` or `responseSchema`.
 *
 * @example
 * ```ts
 * const options: IdempotencyBatchOptions = { scope: 'orders-queue', ttlMs: 7 * 24 * 3600_000 };
 * ```
 */
export type IdempotencyBatchOptions = Pick<
  IdempotencyOptions,
  | 'scope'
  | 'ttlMs'
  | 'waitTimeoutMs'
  | 'maxResponseBytes'
  | 'schema'
  | 'isolationLevel'
  | 'maxAttempts'
  | 'encryption'
>;

/**
 * One item of a batch: its key, and the request it stands for (fingerprinted as by
 * `withIdempotency`). Add fields of your own (the message): `fn` gets the items back as given.
 *
 * @example
 * ```ts
 * const items = messages.map((message) => ({ key: message.id, request: message.body, message }));
 * ```
 */
export interface IdempotencyBatchItem {
  key: string;
  request?: unknown;
}

/** A distinct key of the batch, with the options its own `withIdempotency` call would have. */
export interface UniqueItem<I> {
  item: I;
  options: ResolvedOptions;
  token: string;
}

const REFUSED_OPTIONS = ['key', 'request', 'replayCache', 'responseSchema'] as const;

/** The batch's options, checked by `withIdempotency`'s rules, and those a batch does not take. */
export function resolveBatchOptions(
  options: IdempotencyBatchOptions,
  isTransaction: boolean,
  fnType: string,
): ResolvedOptions {
  const parsed = parseOptions(optionsSchema, options, 'withIdempotencyBatch');
  const issues: string[] = REFUSED_OPTIONS.filter((name) => parsed[name] !== undefined).map(
    (name) => `${name}: not an option of withIdempotencyBatch`,
  );
  if (parsed.onConcurrent !== 'wait') issues.push("onConcurrent: a batch always waits ('wait')");
  if (isTransaction) issues.push('db: a batch runs in its own transaction: pass a Kysely instance');
  if (fnType !== 'function') issues.push('fn: must be a function');
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid withIdempotencyBatch options: ${issues.join('; ')}`,
      issues,
    });
  }
  return { ...parsed, key: '', fingerprint: null };
}

/**
 * The distinct keys of the batch in sorted order (the order the claim takes them in), and for
 * each item the index of the first item with its key. Every key is checked before anything is
 * sent.
 */
export function uniqueItems<I extends IdempotencyBatchItem>(
  base: ResolvedOptions,
  items: readonly I[],
) {
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH_ITEMS) {
    throw new InvalidIdempotencyOptionsError({
      message: `withIdempotencyBatch needs 1 to ${MAX_BATCH_ITEMS} items`,
      issues: [`items: must be an array of 1 to ${MAX_BATCH_ITEMS} items`],
    });
  }
  const byKey = new Map<string, UniqueItem<I> & { index: number }>();
  const firstOf: number[] = [];
  items.forEach((item, index) => {
    if (typeof item !== 'object' || item === null) {
      throw new InvalidIdempotencyOptionsError({
        message: 'withIdempotencyBatch: every item must be an object with a key',
        issues: [`items.${index}: must be an object`],
      });
    }
    const key = itemKey(item.key, base.scope, index);
    const fingerprint = itemFingerprint(item.request, index);
    const first = byKey.get(key);
    firstOf.push(first ? first.index : index);
    if (first) return;
    const options = { ...base, key, fingerprint };
    byKey.set(key, { item, options, token: inFlightToken(base.schema, base.scope, key), index });
  });
  // Printable ASCII keys: JavaScript's order is the byte order of the ledger's COLLATE "C".
  const unique = [...byKey.values()].sort((a, b) =>
    a.options.key < b.options.key ? -1 : a.options.key > b.options.key ? 1 : 0,
  );
  return { unique, firstOf };
}

/** The item's key, checked as `withIdempotency` checks it; its error names the item, not the key. */
function itemKey(key: unknown, scope: string, index: number): string {
  try {
    return parseKey(key, scope);
  } catch (error) {
    if (!(error instanceof InvalidIdempotencyKeyError)) throw error;
    throw new InvalidIdempotencyKeyError({
      message: `withIdempotencyBatch: items.${index}.key: ${error.message}`,
      scope,
      key: error.key,
    });
  }
}

/** The item's request fingerprint; a non-JSON request's issue names the item. */
function itemFingerprint(request: unknown, index: number): Buffer | null {
  try {
    return fingerprintOrThrow(request);
  } catch (error) {
    if (!(error instanceof InvalidIdempotencyOptionsError)) throw error;
    const issues = error.issues.map((issue) => `items.${index}.${issue}`);
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid withIdempotencyBatch items: ${issues.join('; ')}`,
      issues,
      cause: error.cause,
    });
  }
}
