import { type ZodType, z } from 'zod';
import { NotJsonError } from './canonical-json.ts';
import { InvalidIdempotencyKeyError, InvalidIdempotencyOptionsError } from './errors.ts';
import { fingerprintRequest } from './fingerprint.ts';
import { parseOptions } from './internal/parse-options.ts';
import { DEFAULT_SCHEMA, schemaNameSchema } from './internal/schema-name.ts';
import type { ReplayCache } from './replay-cache.ts';
import { isResponseEncryption, type ResponseEncryption } from './response-encryption.ts';

export { DEFAULT_SCHEMA };
/** Default time a completed key replays: 24 hours. */
export const DEFAULT_TTL_MS = 24 * 60 * 60 * 1000;
/** Default longest wait for an in-flight duplicate: 10 seconds. */
export const DEFAULT_WAIT_TIMEOUT_MS = 10_000;
/** Default largest storable response, measured as UTF-8 JSON: 1 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
/** Default number of transaction attempts on serialization failures and deadlocks. */
export const DEFAULT_MAX_ATTEMPTS = 5;

const MAX_TTL_MS = 10 * 365 * DEFAULT_TTL_MS;
// lock_timeout is an int in milliseconds on the server.
const MAX_TIMEOUT_MS = 2_147_483_647;
// A json value can be 1 GB; far below that, a response this large is a mistake.
const MAX_RESPONSE_BYTES_LIMIT = 256 * 1024 * 1024;
/** A printable-ASCII key of 1 to 255 characters, as Stripe and the IETF draft accept. */
const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;

/** The Postgres isolation levels the library's own transaction can run at. */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/**
 * A zod 4 schema for the response. `fn` returns what the schema accepts (its input type); every
 * call returns what it produces (its output type).
 */
export type ResponseSchema = ZodType;

/**
 * Options of {@link withIdempotency}.
 *
 * @example
 * ```ts
 * const options: IdempotencyOptions = {
 *   scope: `tenant:${tenantId}:create-payment`,
 *   key: request.headers['idempotency-key'],
 *   request: request.body,
 *   ttlMs: 72 * 60 * 60 * 1000,
 * };
 * ```
 */
export interface IdempotencyOptions {
  /**
   * Namespace of the key: a tenant, a principal and/or an operation. The same key in two scopes is
   * two operations. Scope keys to the authenticated principal, so that one client's key can never
   * replay another client's response. 1 to 255 characters.
   */
  scope: string;
  /**
   * The client's idempotency key: 1 to 255 printable ASCII characters. Typed to take a request
   * header as it comes: `undefined` (a missing header) and an array (a repeated one) are refused
   * with an {@link InvalidIdempotencyKeyError} (400).
   */
  key: string | readonly string[] | undefined;
  /**
   * The request the key stands for; any JSON value. Its fingerprint (SHA-256 of canonical JSON, so
   * key order does not matter) is stored, and the same key with another request is refused with
   * {@link IdempotencyKeyReusedError}. Omit it on every call for a key to skip the check: a
   * call with a request and one without are different requests.
   */
  request?: unknown;
  /** How long a completed key replays, measured by the database clock. Default 24 hours. */
  ttlMs?: number;
  /**
   * What a duplicate does while the first call with its key is still in its transaction:
   * `'wait'` (default) blocks until it ends, then replays its response (or executes, if it rolled
   * back); `'reject'` fails at once with {@link IdempotencyConflictError}.
   *
   * `'optimistic'` claims nothing before `fn`: `fn` runs, and the finished entry is written once,
   * last, in its transaction, which makes a first execution cheaper (one write instead of two; see
   * the README's Performance section). A duplicate that arrives while the first call is in flight
   * runs its own `fn` too; whichever commits first keeps its writes, and the other rolls back all
   * of its `fn`'s writes and replays the winner's response. Only for a `fn` whose every effect is
   * in the transaction (nothing sent outside it: no HTTP call, no message), and only with the
   * library's own transaction (a `Kysely` instance, not your `Transaction`).
   */
  onConcurrent?: 'wait' | 'reject' | 'optimistic';
  /**
   * Longest wait for an in-flight duplicate with `onConcurrent: 'wait'`; with `'optimistic'`, the
   * longest wait of the record for a transaction that holds the key uncommitted. Default 10 s.
   */
  waitTimeoutMs?: number;
  /**
   * Validates the response before it is stored, and parses the stored JSON on the first call and
   * on every replay, so every call returns the same typed value. Use `z.coerce.date()` for dates:
   * JSON stores them as text.
   *
   * @example
   * ```ts
   * responseSchema: z.object({ id: z.string(), createdAt: z.coerce.date() })
   * ```
   */
  responseSchema?: ResponseSchema;
  /** Largest storable response, as UTF-8 JSON. Default 1 MiB. */
  maxResponseBytes?: number;
  /** Postgres schema that holds the ledger (the one you migrated). Default `idempotency`. */
  schema?: string;
  /**
   * Isolation level of the library's own transaction. Default: the database's default (normally
   * `'read committed'`). Not allowed when you pass your own transaction: it already has one.
   */
  isolationLevel?: IsolationLevel;
  /**
   * Attempts of the library's own transaction when Postgres reports a serialization failure or a
   * deadlock (40001, 40P01); `fn` runs again on each. Default 5. Not allowed with your own
   * transaction: only you can retry it.
   */
  maxAttempts?: number;
  /**
   * An in-process cache of completed entries: a replay found there costs no database round trip.
   * Share one {@link ReplayCache} between calls. Used when the library owns the transaction.
   *
   * @example
   * ```ts
   * const replayCache = new ReplayCache();
   * await withIdempotency(db, { scope, key, replayCache }, fn);
   * ```
   */
  replayCache?: ReplayCache;
  /**
   * Encrypts the stored response at rest (AES-256-GCM), built once with
   * {@link responseEncryption}. Entries stored in clear before it was set keep replaying; an
   * encrypted entry read without its key is a {@link ResponseDecryptionError}. The replay cache,
   * in memory, holds responses decrypted.
   *
   * @example
   * ```ts
   * const encryption = responseEncryption({ keys: [{ id: '2026-12', key }] });
   * await withIdempotency(db, { scope, key: idempotencyKey, encryption }, fn);
   * ```
   */
  encryption?: ResponseEncryption;
}

/** The schema of {@link IdempotencyOptions}; `withIdempotencyBatch` parses its own options with it. */
export const optionsSchema = z.strictObject({
  scope: z
    .string({
      // Only for a missing or non-string scope: the length checks keep their own messages.
      error: (issue) =>
        issue.code !== 'invalid_type'
          ? undefined
          : issue.input === undefined
            ? 'is required'
            : 'must be a string',
    })
    .min(1)
    .max(255)
    .refine((scope) => !scope.includes('\0'), 'must not contain NUL')
    // A lone surrogate has no UTF-8 form: pg would send U+FFFD, and two different scopes would
    // become the same one in the ledger.
    .refine((scope) => scope.isWellFormed(), 'must be well-formed Unicode (no lone surrogates)'),
  key: z.unknown().optional(),
  request: z.unknown().optional(),
  ttlMs: z.int().positive().max(MAX_TTL_MS).default(DEFAULT_TTL_MS),
  onConcurrent: z.enum(['wait', 'reject', 'optimistic']).default('wait'),
  waitTimeoutMs: z.int().positive().max(MAX_TIMEOUT_MS).default(DEFAULT_WAIT_TIMEOUT_MS),
  responseSchema: z
    .custom<ResponseSchema>(
      (schema) =>
        typeof schema === 'object' &&
        schema !== null &&
        typeof (schema as { safeParse?: unknown }).safeParse === 'function',
      'must be a zod schema',
    )
    .optional(),
  maxResponseBytes: z
    .int()
    .positive()
    .max(MAX_RESPONSE_BYTES_LIMIT)
    .default(DEFAULT_MAX_RESPONSE_BYTES),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
  isolationLevel: z.enum(['read committed', 'repeatable read', 'serializable']).optional(),
  maxAttempts: z.int().min(1).max(100).optional(),
  replayCache: z
    .custom<ReplayCache>(
      (cache) =>
        typeof cache === 'object' &&
        cache !== null &&
        typeof (cache as { find?: unknown }).find === 'function' &&
        typeof (cache as { remember?: unknown }).remember === 'function',
      'must be a ReplayCache',
    )
    .optional(),
  encryption: z
    .custom<ResponseEncryption>(isResponseEncryption, 'must be built by responseEncryption()')
    .optional(),
});

/** Options after validation, with defaults filled in and the request fingerprinted. */
export interface ResolvedOptions {
  scope: string;
  key: string;
  fingerprint: Buffer | null;
  ttlMs: number;
  onConcurrent: 'wait' | 'reject' | 'optimistic';
  waitTimeoutMs: number;
  responseSchema?: ResponseSchema | undefined;
  maxResponseBytes: number;
  schema: string;
  isolationLevel?: IsolationLevel | undefined;
  maxAttempts?: number | undefined;
  replayCache?: ReplayCache | undefined;
  encryption?: ResponseEncryption | undefined;
}

/**
 * Validates `withIdempotency` options once, at the edge.
 *
 * @throws {InvalidIdempotencyKeyError} for a missing or malformed key.
 * @throws {InvalidIdempotencyOptionsError} for anything else that is wrong.
 */
export function resolveOptions(options: IdempotencyOptions): ResolvedOptions {
  const parsed = parseOptions(optionsSchema, options, 'withIdempotency');
  return {
    ...parsed,
    key: parseKey(parsed.key, parsed.scope),
    fingerprint: fingerprintOrThrow(parsed.request),
  };
}

/**
 * Whether `key` is a valid idempotency key (or message id): a string of 1 to 255 printable ASCII
 * characters. The rule every call checks, for code that sorts out bad keys before a call (a batch
 * of messages, where one bad id would fail the whole batch).
 *
 * @example
 * ```ts
 * const valid = messages.filter((message) => isValidIdempotencyKey(message.id));
 * ```
 */
export function isValidIdempotencyKey(key: unknown): key is string {
  return typeof key === 'string' && KEY_PATTERN.test(key);
}

/**
 * The key, checked: 1 to 255 printable ASCII characters.
 *
 * @throws {InvalidIdempotencyKeyError} for a missing or malformed key.
 */
export function parseKey(key: unknown, scope: string): string {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) {
    throw new InvalidIdempotencyKeyError({
      message: describeKeyProblem(key),
      scope,
      ...(typeof key === 'string' ? { key } : {}),
    });
  }
  return key;
}

/**
 * Checks `withIdempotency` options, all but the key, without a call and without a database: the
 * same rules, and the same {@link InvalidIdempotencyOptionsError}, as the call itself. For code
 * that builds options once and calls with them later (a message consumer, a middleware), so that
 * a mistake fails where it is made rather than on every call.
 *
 * @param caller Names the function in the error's message. Default `withIdempotency`.
 * @throws {InvalidIdempotencyOptionsError} listing each invalid option.
 *
 * @example
 * ```ts
 * const options = { scope: 'orders', ttlMs: 7 * 24 * 60 * 60 * 1000, waitTimeoutMs: 30_000 };
 * validateIdempotencyOptions(options, 'ordersConsumer'); // throws here, not on each message
 * // later, per message:
 * await withIdempotency(db, { ...options, key: message.id }, handle);
 * ```
 */
export function validateIdempotencyOptions(
  options: Omit<IdempotencyOptions, 'key'>,
  caller = 'withIdempotency',
): void {
  const parsed = parseOptions(optionsSchema, options, caller);
  fingerprintOrThrow(parsed.request);
}

function describeKeyProblem(key: unknown): string {
  if (key === undefined || key === null) return 'An idempotency key is required';
  if (typeof key !== 'string') return `The idempotency key must be a string, not ${typeof key}`;
  if (key.length === 0) return 'The idempotency key must not be empty';
  if (key.length > 255)
    return `The idempotency key is ${key.length} characters long; at most 255 are allowed`;
  return 'The idempotency key must consist of printable ASCII characters only';
}

/**
 * The request's fingerprint, or null without one.
 *
 * @throws {InvalidIdempotencyOptionsError} when it is not JSON.
 */
export function fingerprintOrThrow(request: unknown): Buffer | null {
  if (request === undefined) return null;
  try {
    return fingerprintRequest(request);
  } catch (error) {
    // A NotJsonError names the offending path; anything else (a throwing toJSON(), nesting too deep
    // for the stack) still means the request cannot be fingerprinted.
    const problem = error instanceof NotJsonError ? error.message : 'cannot be serialised as JSON';
    const issue = `request: ${problem}`;
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid withIdempotency options: ${issue}`,
      issues: [issue],
      cause: error,
    });
  }
}
