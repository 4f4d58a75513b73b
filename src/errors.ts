/**
 * Errors raised by idempotency-ledger.
 *
 * Every error the library itself raises is an {@link IdempotencyError} with a stable `code`; errors
 * thrown by your own `fn` reach you unchanged. Match with `instanceof` or `code`, never with `name`.
 *
 * @module
 */

/** Stable, machine-readable codes of {@link IdempotencyError}. */
export type IdempotencyErrorCode =
  | 'invalid_key'
  | 'invalid_options'
  | 'key_reused'
  | 'conflict'
  | 'unstorable_response'
  | 'stored_response_invalid'
  | 'ledger_schema';

/**
 * Base class of every error the library raises.
 *
 * @example
 * ```ts
 * try {
 *   await withIdempotency(db, { scope, key }, fn);
 * } catch (error) {
 *   if (error instanceof IdempotencyError && error.status) {
 *     return reply.code(error.status).send({ type: error.code, title: error.message });
 *   }
 *   throw error;
 * }
 * ```
 */
export class IdempotencyError extends Error {
  /** Stable identifier of the situation; safe to switch on. */
  readonly code: IdempotencyErrorCode;
  /** The HTTP status that answers this situation, where HTTP has a natural one. */
  readonly status: number | undefined;
  /** The scope of the call that failed, when known. */
  readonly scope: string | undefined;
  /** The idempotency key of the call that failed, when known. */
  readonly key: string | undefined;

  constructor(
    code: IdempotencyErrorCode,
    message: string,
    details: { status?: number; scope?: string; key?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = details.status;
    this.scope = details.scope;
    this.key = details.key;
  }
}

/** The idempotency key is missing, empty, longer than 255 characters or not printable ASCII (HTTP 400). */
export class InvalidIdempotencyKeyError extends IdempotencyError {
  constructor(message: string, details: { scope?: string; key?: string } = {}) {
    super('invalid_key', message, { ...details, status: 400 });
  }
}

/**
 * The options passed to a library function are invalid: a missing scope, a non-JSON `request`, a
 * negative `ttlMs`... A programming error, so it carries no HTTP status.
 */
export class InvalidIdempotencyOptionsError extends IdempotencyError {
  /** One line per invalid option, e.g. `ttlMs: Too small: expected number to be >0`. */
  readonly issues: readonly string[];

  constructor(message: string, issues: readonly string[], details: { cause?: unknown } = {}) {
    super('invalid_options', message, details);
    this.issues = issues;
  }
}

/**
 * The key was already used with a different request (HTTP 422). Nothing was executed: a client
 * reused a key for another operation, or changed the payload of a retry.
 */
export class IdempotencyKeyReusedError extends IdempotencyError {
  constructor(scope: string, key: string) {
    super(
      'key_reused',
      `Idempotency key "${key}" in scope "${scope}" was already used with a different request`,
      { status: 422, scope, key },
    );
  }
}

/** Why an {@link IdempotencyConflictError} was raised. */
export type ConflictReason = 'in_flight' | 'wait_timeout';

/**
 * Another call with the same key is still in its transaction (HTTP 409), and either the caller
 * chose `onConcurrent: 'reject'` or the wait for it exceeded `waitTimeoutMs`. Nothing was executed
 * or saved; the client should retry later.
 */
export class IdempotencyConflictError extends IdempotencyError {
  /** `'in_flight'` with `onConcurrent: 'reject'`, `'wait_timeout'` when the wait ran out. */
  readonly reason: ConflictReason;
  /** A suggested delay before the client retries, for a `Retry-After` header. */
  readonly retryAfterMs: number;

  constructor(scope: string, key: string, reason: ConflictReason, cause: unknown) {
    super(
      'conflict',
      reason === 'in_flight'
        ? `A request with idempotency key "${key}" in scope "${scope}" is already in progress`
        : `Timed out waiting for the in-progress request with idempotency key "${key}" in scope "${scope}"`,
      { status: 409, scope, key, cause },
    );
    this.reason = reason;
    this.retryAfterMs = 1000;
  }
}

/** Why a response could not be stored. */
export type UnstorableResponseReason = 'not_json' | 'too_large' | 'schema' | 'transaction_aborted';

/**
 * The value returned by `fn` cannot be stored as a replayable response: it is not JSON (a BigInt,
 * a cycle), it exceeds `maxResponseBytes`, it fails `responseSchema` before or after the JSON
 * round trip, or a statement inside `fn` failed and aborted the transaction although `fn`
 * returned. The transaction was rolled back: no business write and no ledger entry remain.
 */
export class UnstorableResponseError extends IdempotencyError {
  readonly reason: UnstorableResponseReason;

  constructor(
    scope: string,
    key: string,
    reason: UnstorableResponseReason,
    message: string,
    cause?: unknown,
  ) {
    super('unstorable_response', message, { status: 500, scope, key, cause });
    this.reason = reason;
  }
}

/**
 * A stored response no longer satisfies `responseSchema` on replay, typically because the schema
 * changed after the response was stored. The stored entry is left untouched.
 */
export class StoredResponseInvalidError extends IdempotencyError {
  constructor(scope: string, key: string, cause: unknown) {
    super(
      'stored_response_invalid',
      `The stored response for idempotency key "${key}" in scope "${scope}" does not match responseSchema`,
      { status: 500, scope, key, cause },
    );
  }
}

/** Why a {@link LedgerSchemaError} was raised. */
export type LedgerSchemaProblem = 'missing' | 'newer';

/**
 * The ledger's tables are missing (run `migrate()`), or the database was migrated by a newer
 * version of this library than the one running.
 */
export class LedgerSchemaError extends IdempotencyError {
  readonly problem: LedgerSchemaProblem;
  /** The Postgres schema that holds (or should hold) the ledger. */
  readonly schema: string;

  constructor(schema: string, problem: LedgerSchemaProblem, message: string, cause?: unknown) {
    super('ledger_schema', message, { cause });
    this.problem = problem;
    this.schema = schema;
  }
}
