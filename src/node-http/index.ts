/**
 * `idempotency-ledger/node-http`: the HTTP idempotency contract for a `node:http` server.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type HttpIdempotencyOptions,
  type IdempotencyContext,
  incomingMessageFacts,
  resolveHttpOptions,
  serveOnServerResponse,
} from '../http/index.ts';

export type { IdempotencyContext };

/**
 * Serves one route idempotently on a `node:http` server. The returned function takes the request,
 * the response and the request's body, which you read (and validate) first: a request refused
 * before it reaches the ledger does not use up its key. Pass the parsed JSON value (compared as
 * canonical JSON) or the raw bytes; the handler gets it back as `body`.
 *
 * The handler writes its response on `res` as usual. It is buffered, committed with the
 * handler's writes and only then sent; a retry with the same key gets it back byte for byte. A
 * library problem (missing key, key reused, request in progress...) is answered with RFC 9457
 * problem details. An error the handler throws rolls back, nothing is sent, and the returned
 * promise rejects with it, for your server to answer.
 *
 * @example
 * ```ts
 * const createPayment = idempotent(
 *   { db, scope: (req) => `merchant:${merchantIdOf(req)}:create-payment` },
 *   async (req, res, { trx, key, body }) => {
 *     const payment = await insertPayment(trx, key, body);
 *     res.writeHead(201, { 'content-type': 'application/json', location: `/payments/${payment.id}` });
 *     res.end(JSON.stringify(payment));
 *   },
 * );
 * createServer((req, res) => {
 *   // A rejection left unhandled here would end the process: answer it.
 *   route(req, res).catch((error) => answer500(res, error));
 * });
 * async function route(req: IncomingMessage, res: ServerResponse) {
 *   const body = parsePayment(await readBody(req)); // JSON.parse and validation
 *   if (body === undefined) return answer400(res); // the key is not used up
 *   await createPayment(req, res, body);
 * }
 * ```
 */
export function idempotent<DB, Body = unknown>(
  options: HttpIdempotencyOptions<DB, IncomingMessage>,
  handler: (
    req: IncomingMessage,
    res: ServerResponse,
    context: IdempotencyContext<DB> & { body: Body },
  ) => Promise<void>,
): (req: IncomingMessage, res: ServerResponse, body: Body) => Promise<void> {
  const resolved = resolveHttpOptions(options, 'idempotent (node-http)');
  return (req, res, body) =>
    serveOnServerResponse(resolved, req, res, incomingMessageFacts(req, body), (trx, context) =>
      handler(req, res, { trx, body, ...context }),
    );
}
