import type { Context, MiddlewareHandler, Next } from 'hono';
import {
  type HttpIdempotencyOptions,
  type HttpResponseSnapshot,
  type IdempotencyContext,
  isSafeMethod,
  resolveHttpOptions,
  runIdempotentRequest,
} from '../http/index.ts';
import { UnstorableResponseError } from '../index.ts';
import { HandlerNotRepeatableError } from './handler-not-repeatable-error.ts';
import { requestFacts } from './request-facts.ts';
import { readResponse, responseFromSnapshot } from './response-snapshot.ts';

/** What the handler finds in `c.var.idempotency`: the request's transaction, key and scope. */
export type { IdempotencyContext };

/** The Hono environment the middleware adds to a route: `c.var.idempotency`. */
export interface IdempotencyEnv<DB> {
  Variables: { idempotency: IdempotencyContext<DB> };
}

/** Options of {@link idempotency}: the HTTP options, with `scope` given Hono's `Context`. */
export type HonoIdempotencyOptions<DB> = HttpIdempotencyOptions<DB, Context>;

/** Where the handler's response was: headers set before the middleware, and nothing else. */
const NO_RESPONSE: HttpResponseSnapshot = { status: 200, headers: {}, body: new Uint8Array(0) };

/** Rolls the transaction back once Hono has turned the handler's error into a response. */
class HandlerFailed {}

/**
 * Hono middleware that makes the route behind it idempotent, per the `Idempotency-Key` header:
 * the handler runs in a transaction (`c.var.idempotency.trx`) that commits its writes together
 * with its response, before Hono sends a byte; a retry with the same key gets that response back
 * (`Idempotent-Replayed: true`), byte for byte, without running the handler. A missing key, a key
 * reused with another body, or a duplicate in flight (with `onConcurrent: 'reject'`) is answered
 * with an RFC 9457 problem. The options are checked when `idempotency()` is called.
 *
 * - GET, HEAD, OPTIONS and TRACE pass through untouched, and `c.var.idempotency` is not set for them.
 * - A response `storeIf` rejects (5xx, 408, 425, 429 by default) is sent but not stored, and the
 *   handler's writes roll back: a retry runs the handler again.
 * - An error the handler throws rolls back its writes, and `app.onError`'s response is sent, not
 *   stored. So does a failed commit, which the client never sees as a success.
 * - The response is buffered to be stored (a stream too), up to `maxResponseBytes`. The request
 *   body is read in full to fingerprint it (the handler can still read it): bound it with Hono's
 *   `bodyLimit()` before this middleware.
 * - A handler runs at most once per request: when the transaction fails with a serialization
 *   failure or a deadlock after it ran, the request ends with a 500 problem
 *   ({@link HandlerNotRepeatableError}) and the client retries with the same key.
 *
 * Validate the body before this middleware (a validator placed before it), so that a bad request
 * is answered without using up the key.
 *
 * @example
 * ```ts
 * app.post(
 *   '/payments',
 *   idempotency({ db, scope: (c) => `merchant:${c.get('merchantId')}:create-payment` }),
 *   async (c) => {
 *     const { trx, key } = c.var.idempotency;
 *     const payment = await trx
 *       .insertInto('payments')
 *       .values({ ...(await c.req.json()), idempotency_key: key })
 *       .returningAll()
 *       .executeTakeFirstOrThrow();
 *     return c.json(payment, 201, { Location: `/payments/${payment.id}` });
 *   },
 * );
 * ```
 */
export function idempotency<DB>(
  options: HonoIdempotencyOptions<DB>,
): MiddlewareHandler<IdempotencyEnv<DB>> {
  const resolved = resolveHttpOptions(options, 'idempotency-ledger/hono');
  return async (c, next) => {
    // Safe methods are never claimed: a retried GET has nothing to deduplicate.
    if (isSafeMethod(c.req.method)) return next();
    // Headers set before this middleware (CORS, a request id...) belong on every response of
    // the route, a replay's and a problem's too; the handler's belong on its own response only.
    const headersBefore = new Headers(c.res.headers);
    const facts = await requestFacts(c);
    let handlerRan = false;
    try {
      const outcome = await runIdempotentRequest(resolved, c, facts, async (trx, context) => {
        // Hono's compose lets next() be called once: a transaction retried after the handler
        // ran cannot run it again.
        if (handlerRan) throw new HandlerNotRepeatableError(context);
        handlerRan = true;
        c.set('idempotency', { trx, ...context });
        const response = await runHandler(c, next);
        // No response (a handler that forgot to return one): a 500, not an empty 200 stored.
        if (response === undefined) return undefined;
        const snapshot = await readResponse(response, resolved.maxResponseBytes);
        if (snapshot) return snapshot;
        throw new UnstorableResponseError({
          ...context,
          reason: 'too_large',
          message: `The response body is larger than maxResponseBytes (${resolved.maxResponseBytes})`,
        });
      });
      // Committed (or never to be stored) by now: Hono sends c.res once this middleware returns.
      const ownResponse = outcome.kind === 'executed' || outcome.kind === 'not_stored';
      replaceResponse(c, outcome.response, ownResponse ? undefined : headersBefore);
    } catch (error) {
      // The transaction rolled back; Hono's answer to the handler's error stays as it is.
      if (error instanceof HandlerFailed) return;
      // A failed commit: the handler's response must not reach the client, nor lend its headers
      // to the error response app.onError builds.
      if (handlerRan) replaceResponse(c, NO_RESPONSE, headersBefore);
      throw error;
    }
  };
}

/**
 * Runs the rest of the chain and returns its response, or `undefined` when it produced none;
 * throws {@link HandlerFailed} when Hono caught an error in it.
 */
async function runHandler(c: Context, next: Next): Promise<Response | undefined> {
  const errorBefore = c.error;
  await next();
  if (c.error !== undefined && c.error !== errorBefore) throw new HandlerFailed();
  // Unfinalized, `c.res` is a blank 200 Hono makes up on reading, not the handler's answer.
  return c.finalized ? c.res : undefined;
}

function replaceResponse(c: Context, snapshot: HttpResponseSnapshot, base?: Headers): void {
  // Hono's `c.res` setter copies the current response's headers into the new one: clearing it
  // first keeps the handler's headers off a replay or a problem.
  c.res = undefined;
  c.res = responseFromSnapshot(snapshot, base);
}
