import type { Transaction } from 'kysely';
import { IdempotencyError, withIdempotency } from '../index.ts';
import { ResponseNotSentError } from './http-errors.ts';
import type { ResolvedHttpOptions } from './http-idempotency-options.ts';
import { readIdempotencyKey } from './idempotency-key-header.ts';
import { problemResponseFor } from './problem-details.ts';
import { type HttpRequestFacts, httpRequestFingerprint } from './request-fingerprint.ts';
import {
  type HttpResponseSnapshot,
  storedHttpResponseSchema,
  toStoredHttpResponse,
} from './stored-http-response.ts';

/**
 * What to send, and why:
 * - `executed`: the handler ran and its response committed with its writes;
 * - `not_stored`: the handler ran, `storeIf` judged its response not final (a 5xx, a 429), and
 *   its writes rolled back, so a retry executes again;
 * - `replayed`: the stored response of an earlier request, with the replay header;
 * - `refused`: a problem response (missing key, key reused, in progress...); nothing committed.
 */
export type HttpOutcome =
  | { kind: 'executed' | 'not_stored' | 'replayed'; response: HttpResponseSnapshot }
  | { kind: 'refused'; response: HttpResponseSnapshot; error: IdempotencyError };

/** What an idempotent handler is given: the request's transaction, its key and its scope. */
export interface IdempotencyContext<DB> {
  /** The request's transaction: the handler's writes commit with its response, or not at all. */
  trx: Transaction<DB>;
  /** The request's idempotency key, read from the `Idempotency-Key` header. */
  key: string;
  /** The request's scope, as the `scope` option computed it. */
  scope: string;
}

/** What the handler's side of an adapter produces, given the request's transaction. */
export type ExecuteHandler<DB> = (
  trx: Transaction<DB>,
  context: { scope: string; key: string },
) => Promise<HttpResponseSnapshot | undefined>;

/** Thrown inside the transaction to roll it back when the response is not final. */
class NotFinal {
  readonly response: HttpResponseSnapshot;

  constructor(response: HttpResponseSnapshot) {
    this.response = response;
  }
}

/**
 * Carries a library error that the handler's own work raised (a nested `withIdempotency` with
 * another key, say) past the catch that turns this request's errors into problems: it is the
 * framework's to answer, like any other error of the handler.
 */
class HandlerError {
  readonly error: IdempotencyError;

  constructor(error: IdempotencyError) {
    this.error = error;
  }
}

/** Runs `execute`, wrapping the library errors that are not about this request (scope and key). */
async function produce<DB>(
  execute: ExecuteHandler<DB>,
  trx: Transaction<DB>,
  context: { scope: string; key: string },
): Promise<HttpResponseSnapshot | undefined> {
  try {
    return await execute(trx, context);
  } catch (error) {
    const aboutRequest =
      error instanceof IdempotencyError &&
      error.scope === context.scope &&
      error.key === context.key;
    if (error instanceof IdempotencyError && !aboutRequest) throw new HandlerError(error);
    // Any other error (a serialization failure included) passes as it is: withIdempotency
    // retries those it can and rethrows the rest.
    throw error;
  }
}

/**
 * The HTTP contract around one request, for adapter authors: reads the key, fingerprints the
 * request, and runs `execute` in a transaction that commits its writes with its response, or
 * replays, or refuses with a problem. The returned response is committed (or was never going to
 * be stored) before the adapter sends a byte of it.
 *
 * `execute` returns the handler's response, or `undefined` when the handler sent none (a 500
 * `ResponseNotSentError`). Errors it throws roll back and are rethrown unchanged, for the
 * framework's error handler, library errors from the handler's own work included (a nested
 * `withIdempotency` with another key); so are database errors, including a failed commit. An
 * adapter reports a response it could not capture by throwing an `IdempotencyError` with the
 * request's scope and key, e.g. `new UnstorableResponseError({ ...context, reason, message })`,
 * which is answered with its problem.
 *
 * @example
 * ```ts
 * const outcome = await runIdempotentRequest(options, request, facts, async (trx) => {
 *   const row = await trx.insertInto('payments').values(values).returningAll().executeTakeFirstOrThrow();
 *   return { status: 201, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(row)) };
 * });
 * ```
 */
export async function runIdempotentRequest<DB, Req>(
  options: ResolvedHttpOptions<DB, Req>,
  request: Req,
  facts: HttpRequestFacts,
  execute: ExecuteHandler<DB>,
): Promise<HttpOutcome> {
  // The handler's own response, with every header it set (the stored copy keeps fewer). When
  // withIdempotency retries the transaction after a serialization failure, the last attempt's
  // response is the one that committed.
  let sent: HttpResponseSnapshot | undefined;
  try {
    const key = readIdempotencyKey(facts.keyHeader);
    const scope = await options.scope(request);
    const { response, replayed } = await withIdempotency(
      options.db,
      {
        ...options.ledger,
        scope,
        key,
        request: httpRequestFingerprint(facts, options.fingerprint),
        responseSchema: storedHttpResponseSchema,
      },
      async (trx) => {
        const produced = await produce(execute, trx as Transaction<DB>, { scope, key });
        if (produced === undefined) throw new ResponseNotSentError({ scope, key });
        if (!options.storeIf({ status: produced.status, headers: produced.headers })) {
          throw new NotFinal(produced);
        }
        sent = produced;
        return toStoredHttpResponse(produced, options.storedHeaders);
      },
    );
    if (!replayed && sent) return { kind: 'executed', response: sent };
    return { kind: 'replayed', response: withReplayedHeader(response, options.replayedHeader) };
  } catch (error) {
    if (error instanceof NotFinal) return { kind: 'not_stored', response: error.response };
    if (error instanceof HandlerError) throw error.error;
    const problem = problemResponseFor(error, options.problemTypeBase);
    if (!problem) throw error;
    const libraryError = error as IdempotencyError;
    if (problem.status >= 500) options.onError(libraryError);
    const body = Buffer.from(problem.body, 'utf8');
    return {
      kind: 'refused',
      error: libraryError,
      response: { status: problem.status, headers: problem.headers, body },
    };
  }
}

function withReplayedHeader(
  response: HttpResponseSnapshot,
  replayedHeader: string | false,
): HttpResponseSnapshot {
  if (replayedHeader === false) return response;
  return { ...response, headers: { ...response.headers, [replayedHeader.toLowerCase()]: 'true' } };
}
