/**
 * `idempotency-ledger/express`: the HTTP idempotency contract for Express 4 and 5.
 *
 * @module
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  type HttpIdempotencyOptions,
  type IdempotencyContext,
  incomingMessageFacts,
  isSafeMethod,
  resolveHttpOptions,
  serveOnServerResponse,
} from '../http/index.ts';
import { InvalidIdempotencyOptionsError } from '../index.ts';

export type { IdempotencyContext };

/**
 * Makes an Express route handler idempotent. The handler answers with `res` as usual
 * (`res.status(201).json(payment)`); the response is buffered, committed in the same transaction
 * as the handler's writes (made with `trx`), and only then sent. A retry with the same key gets it
 * back byte for byte, marked `Idempotent-Replayed: true`.
 *
 * - Mount a body parser (`express.json()`) before it: the body is part of the request's
 *   fingerprint, and a key sent again with another body is refused (422).
 * - Validate before it (a middleware in front) or throw from the handler: an error the handler
 *   throws rolls its writes back, is passed to `next(error)` and does not use up the key.
 * - A response the handler sends is final, and stored, unless `storeIf` says otherwise (default:
 *   5xx, 408, 425 and 429 are rolled back, so a retry executes again).
 * - On GET, HEAD, OPTIONS and TRACE it passes the request on with `next()`: mount it on the
 *   routes that change state.
 *
 * Works with Express 4 (where an async handler's rejection is otherwise lost) and Express 5.
 *
 * @example
 * ```ts
 * app.post(
 *   '/payments',
 *   express.json(),
 *   idempotent(
 *     { db, scope: (req) => `merchant:${req.get('merchant-id')}:create-payment` },
 *     async (req, res, { trx, key }) => {
 *       const payment = await insertPayment(trx, req.body, key);
 *       res.status(201).location(`/payments/${payment.id}`).json(payment);
 *     },
 *   ),
 * );
 * ```
 */
export function idempotent<
  DB,
  // Express's own defaults, so that a handler typed like any other Express handler (typed route
  // params, body, res.locals) fits.
  Params = Request['params'],
  // biome-ignore lint/suspicious/noExplicitAny: Express's default
  ResBody = any,
  // biome-ignore lint/suspicious/noExplicitAny: Express's default
  ReqBody = any,
  ReqQuery = Request['query'],
  // biome-ignore lint/suspicious/noExplicitAny: Express's default
  Locals extends Record<string, any> = Record<string, any>,
>(
  // The scope sees a plain Request: were it generic too, TypeScript would fix the handler's types
  // to the defaults while typing `scope`, before reading the handler's annotations.
  options: HttpIdempotencyOptions<DB, Request>,
  handler: (
    req: Request<Params, ResBody, ReqBody, ReqQuery, Locals>,
    res: Response<ResBody, Locals>,
    context: IdempotencyContext<DB>,
  ) => Promise<void>,
): RequestHandler<Params, ResBody, ReqBody, ReqQuery, Locals> {
  const resolved = resolveHttpOptions(options, 'idempotent (express)');
  return (req, res, next: NextFunction) => {
    if (isSafeMethod(req.method)) {
      next();
      return;
    }
    if (req.body === undefined && hasBody(req)) {
      next(
        new InvalidIdempotencyOptionsError({
          message:
            'The request has a body but req.body is undefined: mount a body parser ' +
            '(express.json()) before idempotent(), so that the body is part of the fingerprint',
          issues: ['req.body: no body parser ran'],
        }),
      );
      return;
    }
    const facts = incomingMessageFacts(req, req.body, req.originalUrl);
    // The same object, seen by `scope` with Express's default type parameters.
    const plainRequest = req as unknown as Request;
    serveOnServerResponse(resolved, plainRequest, res, facts, (trx, context) =>
      handler(req, res, { trx, ...context }),
    ).catch(next);
  };
}

function hasBody(req: Pick<Request, 'headers'>): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
