import type { Kysely } from 'kysely';
import { z } from 'zod';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_SCHEMA,
  type IdempotencyError,
  type IdempotencyOptions,
  InvalidIdempotencyOptionsError,
  isResponseEncryption,
  type ResponseEncryption,
} from '../index.ts';
import { DEFAULT_PROBLEM_TYPE_BASE } from './problem-details.ts';

/** Headers of the handler's response that are stored and replayed, by default. */
export const DEFAULT_STORED_HEADERS: readonly string[] = ['content-type', 'location'];
/** The header that marks a replayed response, by default (Stripe's; the IETF draft has none yet). */
export const DEFAULT_REPLAYED_HEADER = 'Idempotent-Replayed';
/** Statuses that ask the client to retry, besides 5xx: not final, so not stored by default. */
const RETRYABLE_STATUSES = new Set([408, 425, 429]);

/** A response as `storeIf` sees it. */
export interface StoreIfResponse {
  status: number;
  /** Header names are lower case. */
  headers: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * Whether a response is final, the default `storeIf`: every status except 5xx, 408, 425 and 429,
 * which tell the client to try again (so storing them would turn a passing fault into the
 * permanent answer for the key).
 *
 * @example
 * ```ts
 * isFinalResponse({ status: 201, headers: {} }); // true
 * isFinalResponse({ status: 503, headers: {} }); // false
 * ```
 */
export function isFinalResponse(response: StoreIfResponse): boolean {
  return response.status < 500 && !RETRYABLE_STATUSES.has(response.status);
}

/** The `withIdempotency` options an HTTP route can set; scope, key and request come from HTTP. */
export type LedgerOptions = Pick<
  IdempotencyOptions,
  | 'ttlMs'
  | 'onConcurrent'
  | 'waitTimeoutMs'
  | 'maxResponseBytes'
  | 'schema'
  | 'isolationLevel'
  | 'maxAttempts'
  | 'encryption'
>;

/** What a request contributes to its fingerprint, besides its method and target. */
export interface FingerprintChoice {
  /**
   * The part of the parsed body that identifies the request. Default: all of it (canonical JSON
   * for a JSON body, so key order and whitespace do not matter; the bytes otherwise).
   *
   * @example
   * ```ts
   * fingerprint: { body: (body) => ({ ...(body as object), client_trace_id: undefined }) }
   * ```
   */
  body?: (body: unknown) => unknown;
  /** Request headers that are part of the request, e.g. `['content-type', 'accept-language']`. */
  headers?: readonly string[];
}

/**
 * Options shared by the HTTP adapters. `Req` is the framework's request (or context) type.
 *
 * @example
 * ```ts
 * const options: HttpIdempotencyOptions<Database, IncomingMessage> = {
 *   db,
 *   // Per principal and operation: one client's key can never replay another client's response.
 *   scope: (req) => `merchant:${String(req.headers['merchant-id'])}:create-payment`,
 *   onConcurrent: 'reject',
 * };
 * ```
 */
export interface HttpIdempotencyOptions<DB, Req> extends LedgerOptions {
  /** The database: each request runs its handler in a transaction opened on it. */
  db: Kysely<DB>;
  /**
   * The scope of the request's key: the authenticated principal and the operation, e.g.
   * `` `merchant:${id}:create-payment` ``. Required, because a scope shared by all clients lets
   * any client that learns (or guesses) another's key receive that client's response.
   */
  scope: (request: Req) => string | Promise<string>;
  /** Response headers stored and replayed, case-insensitive. Default `Content-Type`, `Location`. */
  storedHeaders?: readonly string[];
  /** The header set on a replay (value `true`), or `false` for none. Default `Idempotent-Replayed`. */
  replayedHeader?: string | false;
  /**
   * Whether the handler's response is final: stored and replayed (true), or rolled back with the
   * handler's writes so that a retry executes again (false). Default {@link isFinalResponse}.
   */
  storeIf?: (response: StoreIfResponse) => boolean;
  /** What identifies the request besides method and target; see {@link FingerprintChoice}. */
  fingerprint?: FingerprintChoice;
  /** Prefix of problem `type` URIs. Default `urn:idempotency-ledger:problem:`. */
  problemTypeBase?: string;
  /**
   * Called with each library error answered with a 5xx problem (a ledger that is not migrated, a
   * response too large to store...), which the client sees only as `internal-error`. Default: one
   * line on `console.error`, without the key or the scope.
   */
  onError?: (error: IdempotencyError) => void;
}

/** {@link HttpIdempotencyOptions} checked, with defaults filled in. */
export interface ResolvedHttpOptions<DB, Req> {
  db: Kysely<DB>;
  scope: (request: Req) => string | Promise<string>;
  ledger: LedgerOptions & { schema: string };
  storedHeaders: ReadonlySet<string>;
  replayedHeader: string | false;
  storeIf: (response: StoreIfResponse) => boolean;
  fingerprint: FingerprintChoice;
  problemTypeBase: string;
  onError: (error: IdempotencyError) => void;
  /**
   * Largest response body the adapters buffer before giving up. The stored form must fit too: a
   * body that is not UTF-8 text is stored as base64, a third larger, so it can be refused at
   * about three quarters of this size (as a 500 `response-not-storable`, nothing committed).
   */
  maxResponseBytes: number;
}

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name');
const aFunction = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', {
  error: 'must be a function',
});

const httpOptionsSchema = z.looseObject({
  db: z.custom<Kysely<unknown>>(
    (db) =>
      typeof db === 'object' && db !== null && typeof Reflect.get(db, 'transaction') === 'function',
    { error: 'must be a Kysely instance' },
  ),
  scope: aFunction,
  storedHeaders: z.array(headerName).optional(),
  replayedHeader: z.union([headerName, z.literal(false)]).optional(),
  storeIf: aFunction.optional(),
  fingerprint: z
    .strictObject({ body: aFunction.optional(), headers: z.array(headerName).optional() })
    .optional(),
  problemTypeBase: z.string().optional(),
  onError: aFunction.optional(),
  maxResponseBytes: z.int().positive().optional(),
  // The ledger options' shapes, so that a typo fails at startup rather than as a 500 on every
  // request. Their upper bounds and the schema name's rules are the core's: withIdempotency
  // checks them on each call.
  ttlMs: z.int().positive().optional(),
  onConcurrent: z.enum(['wait', 'reject']).optional(),
  waitTimeoutMs: z.int().positive().optional(),
  schema: z.string().min(1).optional(),
  isolationLevel: z.enum(['read committed', 'repeatable read', 'serializable']).optional(),
  maxAttempts: z.int().min(1).optional(),
  // Not any object with seal and open: a fake would decide what is stored and what is replayed.
  encryption: z
    .custom<ResponseEncryption>(isResponseEncryption, {
      error: 'must be built by responseEncryption()',
    })
    .optional(),
});

/**
 * Checks an adapter's options once, when the route is set up, so a mistake fails at startup and
 * not on the first request. The ledger options are checked again, bounds included, by
 * `withIdempotency`.
 *
 * @example
 * ```ts
 * const resolved = resolveHttpOptions({ db, scope: (req) => `merchant:${req.merchantId}` }, 'myAdapter');
 * ```
 *
 * @throws {InvalidIdempotencyOptionsError} naming each invalid option.
 */
export function resolveHttpOptions<DB, Req>(
  options: HttpIdempotencyOptions<DB, Req>,
  adapterName: string,
): ResolvedHttpOptions<DB, Req> {
  const result = httpOptionsSchema.safeParse(options);
  if (!result.success) {
    const issues = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(options)'}: ${issue.message}`,
    );
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid ${adapterName} options: ${issues.join('; ')}`,
      issues,
      cause: result.error,
    });
  }
  const {
    ttlMs,
    onConcurrent,
    waitTimeoutMs,
    maxResponseBytes,
    isolationLevel,
    maxAttempts,
    encryption,
  } = options;
  const ledger = {
    ...definedOnly({
      ttlMs,
      onConcurrent,
      waitTimeoutMs,
      maxResponseBytes,
      isolationLevel,
      maxAttempts,
      encryption,
    }),
    schema: options.schema ?? DEFAULT_SCHEMA,
  };
  return {
    db: options.db,
    scope: options.scope,
    ledger,
    storedHeaders: new Set((options.storedHeaders ?? DEFAULT_STORED_HEADERS).map(lower)),
    replayedHeader:
      options.replayedHeader === undefined ? DEFAULT_REPLAYED_HEADER : options.replayedHeader,
    storeIf: options.storeIf ?? isFinalResponse,
    fingerprint: options.fingerprint ?? {},
    problemTypeBase: options.problemTypeBase ?? DEFAULT_PROBLEM_TYPE_BASE,
    onError: options.onError ?? logLibraryError,
    maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
  };
}

function lower(name: string): string {
  return name.toLowerCase();
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The default `onError`: the error's class, code and message; never its key or scope fields. */
function logLibraryError(error: IdempotencyError): void {
  console.error(`idempotency-ledger: ${error.name} (${error.code}): ${error.message}`);
}
