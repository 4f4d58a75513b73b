import { IdempotencyError } from '../index.ts';

/**
 * The request's transaction failed with a serialization failure or a deadlock after the Hono
 * handler had run, and a Hono handler runs at most once per request, so it could not be retried
 * (HTTP 500, answered as an `internal-error` problem). Nothing was committed: the client can send
 * the request again with the same key. Failures before the handler runs are still retried, up to
 * `maxAttempts`.
 */
export class HandlerNotRepeatableError extends IdempotencyError {
  constructor(options: { scope: string; key: string }) {
    super({
      ...options,
      code: 'handler_not_repeatable',
      status: 500,
      message:
        'The transaction failed after the handler ran (a serialization failure or a deadlock) ' +
        'and a Hono handler cannot run twice in one request; nothing was committed',
    });
  }
}
