/**
 * Errors raised by idempotency-ledger.
 *
 * Every error the library itself raises is an {@link IdempotencyError} with a stable `code`; errors
 * thrown by your own `fn` reach you unchanged. Match with `instanceof` or `code`, never with `name`.
 *
 * Messages never contain the idempotency key or the scope: a key can act as the bearer of someone's
 * response, and a scope often names a tenant. Both stay available as fields (`error.key`,
 * `error.scope`) for code that needs them.
 *
 * @module
 */

/**
 * Stable, machine-readable codes of {@link IdempotencyError}. Modules that build on the core add
 * codes of their own, so any string is accepted; the ones listed are the core's.
 */
export type IdempotencyErrorCode =
  | 'invalid_key'
  | 'invalid_options'
  | 'key_reused'
  | 'conflict'
  | 'unstorable_response'
  | 'stored_response_invalid'
  | 'response_decryption'
  | 'ledger_schema'
  // Keeps editor completion for the names above while accepting any other string.
  | (string & {});

/** What every {@link IdempotencyError} is built from. */
export interface IdempotencyErrorOptions {
  /** Stable identifier of the situation, e.g. `'conflict'`. */
  code: IdempotencyErrorCode;
  /** Human-readable description. Must not contain the key, the scope, a request or a response. */
  message: string;
  /** The HTTP status that answers this situation, where HTTP has a natural one. */
  status?: number | undefined;
  /** The scope of the call that failed, when known. */
  scope?: string | undefined;
  /** The idempotency key of the call that failed, when known. */
  key?: string | undefined;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * Base class of every error the library raises.
 *
 * @example
 * ```ts
 * try {
 *   await withIdempotency(db, { scope, key }, fn);
 * } catch (error) {
 *   if (error instanceof IdempotencyError && error.code === 'conflict') {
 *     return retryLater(); // a queue consumer: put the message back
 *   }
 *   throw error;
 * }
 * // Over HTTP, the adapters (or problemResponseFor() from idempotency-ledger/http) answer these
 * // with RFC 9457 problem details.
 * ```
 */
export class IdempotencyError extends Error {
  /** Stable identifier of the situation; safe to switch on. */
  readonly code: IdempotencyErrorCode;
  /** The HTTP status that answers this situation, where HTTP has a natural one. */
  readonly status: number | undefined;
  /**
   * The scope of the call that failed, when known. Never part of `message`, and not enumerable:
   * `console.error(error)`, `JSON.stringify` and loggers that copy an error's own properties do
   * not print it.
   */
  declare readonly scope: string | undefined;
  /** The idempotency key of the call that failed, when known; like `scope`, never printed. */
  declare readonly key: string | undefined;

  constructor(options: IdempotencyErrorOptions) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.status = options.status;
    // Secrets of the caller (a key can be the bearer of someone's response; a scope often names a
    // tenant): readable by code that asks for them, invisible to whatever prints the error.
    Object.defineProperties(this, {
      scope: { value: options.scope, enumerable: false },
      key: { value: options.key, enumerable: false },
    });
  }
}

/** The idempotency key is missing, empty, longer than 255 characters or not printable ASCII (HTTP 400). */
export class InvalidIdempotencyKeyError extends IdempotencyError {
  constructor(options: { message: string; scope?: string | undefined; key?: string | undefined }) {
    super({ ...options, code: 'invalid_key', status: 400 });
  }
}

/**
 * The options passed to a library function are invalid: a missing scope, a non-JSON `request`, a
 * negative `ttlMs`... A programming error, so it carries no HTTP status.
 */
export class InvalidIdempotencyOptionsError extends IdempotencyError {
  /** One line per invalid option, e.g. `ttlMs: Too small: expected number to be >0`. */
  readonly issues: readonly string[];

  constructor(options: { message: string; issues: readonly string[]; cause?: unknown }) {
    super({ code: 'invalid_options', message: options.message, cause: options.cause });
    this.issues = options.issues;
  }
}

/**
 * The key was already used with a different request (HTTP 422). Nothing was executed: a client
 * reused a key for another operation, or changed the payload of a retry.
 */
export class IdempotencyKeyReusedError extends IdempotencyError {
  constructor(options: { scope: string; key: string }) {
    super({
      ...options,
      code: 'key_reused',
      status: 422,
      message: 'This idempotency key was already used with a different request',
    });
  }
}

/** Why an {@link IdempotencyConflictError} was raised. */
export type ConflictReason = 'in_flight' | 'wait_timeout' | 'same_transaction';

/** The delay an {@link IdempotencyConflictError} suggests before a retry, unless told otherwise. */
const DEFAULT_RETRY_AFTER_MS = 1000;

/**
 * Another call with the same key is still in its transaction (HTTP 409), and either the caller
 * chose `onConcurrent: 'reject'`, or the wait for it exceeded `waitTimeoutMs`, or that call runs in
 * the very transaction this one was given (it cannot be waited for). Nothing was executed or
 * saved; the client should retry later.
 */
export class IdempotencyConflictError extends IdempotencyError {
  /**
   * `'in_flight'` with `onConcurrent: 'reject'`, `'wait_timeout'` when the wait ran out,
   * `'same_transaction'` when the key was claimed earlier in the same (caller's) transaction.
   */
  readonly reason: ConflictReason;
  /** A suggested delay before the client retries, for a `Retry-After` header. */
  readonly retryAfterMs: number;

  constructor(options: {
    scope: string;
    /** Unknown for a batch (`withIdempotencyBatch`): its claim waits for its keys in one statement. */
    key?: string | undefined;
    reason: ConflictReason;
    retryAfterMs?: number;
    cause?: unknown;
  }) {
    const { reason, retryAfterMs = DEFAULT_RETRY_AFTER_MS, ...rest } = options;
    super({ ...rest, code: 'conflict', status: 409, message: conflictMessage(reason) });
    this.reason = reason;
    this.retryAfterMs = retryAfterMs;
  }
}

function conflictMessage(reason: ConflictReason): string {
  switch (reason) {
    case 'in_flight':
      return 'A request with this idempotency key is already in progress';
    case 'wait_timeout':
      return 'Timed out waiting for the in-progress request with this idempotency key';
    case 'same_transaction':
      return 'This idempotency key was already claimed earlier in the same transaction';
  }
}

/** Why a response could not be stored. */
export type UnstorableResponseReason =
  | 'not_json'
  | 'too_large'
  | 'schema'
  | 'transaction_aborted'
  | 'transaction_ended';

/**
 * The value returned by `fn` cannot be stored as a replayable response: it is not JSON (a BigInt,
 * a cycle), it exceeds `maxResponseBytes`, it fails `responseSchema` before or after the JSON
 * round trip, or the transaction could not record it (a statement inside `fn` failed and aborted
 * the transaction although `fn` returned, or `fn` ended the transaction itself). The transaction
 * was rolled back: no business write and no ledger entry remain.
 */
export class UnstorableResponseError extends IdempotencyError {
  readonly reason: UnstorableResponseReason;

  constructor(options: {
    scope: string;
    /** Unknown when a whole batch (`withIdempotencyBatch`) could not be recorded. */
    key?: string | undefined;
    reason: UnstorableResponseReason;
    message: string;
    cause?: unknown;
  }) {
    const { reason, ...rest } = options;
    super({ ...rest, code: 'unstorable_response', status: 500 });
    this.reason = reason;
  }
}

/**
 * A stored response no longer satisfies `responseSchema` on replay, typically because the schema
 * changed after the response was stored. The stored entry is left untouched.
 */
export class StoredResponseInvalidError extends IdempotencyError {
  constructor(options: { scope: string; key: string; cause: unknown }) {
    super({
      ...options,
      code: 'stored_response_invalid',
      status: 500,
      message: 'The stored response for this idempotency key does not match responseSchema',
    });
  }
}

/**
 * What a sealed value is; part of its authenticated data, so a ciphertext only opens as what it
 * was: a ledger entry's response, or an operation's request, step result or final response.
 */
export type SealedKind =
  | 'ledger_response'
  | 'operation_request'
  | 'operation_step'
  | 'operation_response'
  // Keeps editor completion for the names above while accepting any other string: a module that
  // stores values on the caller's behalf (sealStoredJson) names its own kinds.
  | (string & {});

/** Why a {@link ResponseDecryptionError} was raised. */
export type ResponseDecryptionReason =
  | 'no_key'
  | 'unknown_key'
  | 'authentication_failed'
  | 'malformed'
  | 'plaintext_refused';

const decryptionMessages: Record<ResponseDecryptionReason, string> = {
  no_key: 'is encrypted, and no encryption option was given to read it',
  unknown_key: 'was encrypted with a key (see keyId) that is not among the configured keys',
  authentication_failed:
    'failed authentication: it was altered, copied from another entry, or encrypted with another key under the same id',
  malformed: 'starts as an encrypted value but is not one the library wrote',
  plaintext_refused: "is not encrypted, and the encryption option refuses plaintext ('refuse')",
};

const storedNames = new Map<SealedKind, string>([
  ['ledger_response', 'The stored response'],
  ['operation_request', "The operation's stored request"],
  ['operation_step', 'A step result of the operation'],
  ['operation_response', "The operation's stored response"],
]);

/**
 * A stored value could not be read back (HTTP 500): it is encrypted and the call has no key for
 * it, or it fails authentication (altered, or moved from another entry), or it is in clear and
 * the configuration refuses that. Nothing was executed and the entry is left untouched: the key
 * stays taken, and what it stores is never returned in any other form.
 */
export class ResponseDecryptionError extends IdempotencyError {
  readonly reason: ResponseDecryptionReason;
  /**
   * What could not be read: `'ledger_response'`, an operation's `'operation_request'`,
   * `'operation_step'` or `'operation_response'`, or the kind another module stored it as.
   */
  readonly stored: SealedKind;
  /** The id of the key the entry names, when it could be read (ids are not secret). */
  readonly keyId: string | undefined;

  constructor(options: {
    scope: string;
    key: string;
    reason: ResponseDecryptionReason;
    stored?: SealedKind | undefined;
    keyId?: string | undefined;
    cause?: unknown;
  }) {
    const { reason, keyId, stored = 'ledger_response', ...rest } = options;
    const what = storedNames.get(stored) ?? 'A stored value';
    super({
      ...rest,
      code: 'response_decryption',
      status: 500,
      message: `${what} for this idempotency key ${decryptionMessages[reason]}`,
    });
    this.reason = reason;
    this.stored = stored;
    this.keyId = keyId;
  }
}

/** Why a {@link LedgerSchemaError} was raised. */
export type LedgerSchemaProblem = 'missing' | 'newer' | 'modified' | 'unsupported';

/**
 * The ledger's tables are missing (run `migrate()`), the database was migrated by a newer version
 * of this library than the one running, a migration it applied differs from this version's file
 * (`'modified'`), or the database cannot hold a ledger (it is not UTF-8).
 */
export class LedgerSchemaError extends IdempotencyError {
  readonly problem: LedgerSchemaProblem;
  /** The Postgres schema that holds (or should hold) the ledger. */
  readonly schema: string;

  constructor(options: {
    schema: string;
    problem: LedgerSchemaProblem;
    message: string;
    cause?: unknown;
  }) {
    super({ code: 'ledger_schema', message: options.message, cause: options.cause });
    this.problem = options.problem;
    this.schema = options.schema;
  }
}
