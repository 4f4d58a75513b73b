import { IdempotencyError, InvalidIdempotencyKeyError } from '../index.ts';

/** Why an `Idempotency-Key` header was refused. */
export type KeyHeaderProblem = 'missing' | 'repeated' | 'malformed';

/**
 * The `Idempotency-Key` header is missing, sent more than once, or not a key (HTTP 400). A
 * subclass of {@link InvalidIdempotencyKeyError}, so code that handles the core's error handles
 * this one too. The message never contains the header's value.
 */
export class IdempotencyKeyHeaderError extends InvalidIdempotencyKeyError {
  readonly problem: KeyHeaderProblem;

  constructor(options: { problem: KeyHeaderProblem; message: string }) {
    super({ message: options.message });
    this.problem = options.problem;
  }
}

/**
 * The handler finished without producing a response (it returned before ending it, or handed the
 * request on with `next()`): nothing can be stored, so the transaction rolled back (HTTP 500).
 */
export class ResponseNotSentError extends IdempotencyError {
  constructor(options: { scope: string; key: string }) {
    super({
      ...options,
      code: 'response_not_sent',
      status: 500,
      message:
        'The idempotent handler finished without sending a response; its transaction was ' +
        'rolled back. Send the response before the handler returns (or its promise resolves).',
    });
  }
}
