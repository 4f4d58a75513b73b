import type { ServerResponse } from 'node:http';
import type { Transaction } from 'kysely';
import { UnstorableResponseError } from '../index.ts';
import type { ResolvedHttpOptions } from './http-idempotency-options.ts';
import type { HttpRequestFacts } from './request-fingerprint.ts';
import { runIdempotentRequest } from './run-idempotent-request.ts';
import {
  captureServerResponse,
  type ResponseCapture,
  restoreResponse,
  saveResponse,
  sendSnapshot,
} from './server-response-capture.ts';

/**
 * {@link runIdempotentRequest} for frameworks that answer on a Node `ServerResponse` (node:http,
 * Express, Connect...): the handler writes its response on `res` as usual; it is buffered,
 * committed with the handler's writes, and only then sent. A replay or a problem is sent on `res`
 * too. Errors the handler throws (and database errors) are rethrown with nothing sent and `res`'s
 * status and headers as they were, for the framework's error handler.
 *
 * A replay sends the stored status, headers and body; the reason phrase of the status line is not
 * stored (clients ignore it, and HTTP/2 has none), so a replay has the status's standard text.
 *
 * @example
 * ```ts
 * await serveOnServerResponse(options, req, res, facts, async (trx) => {
 *   const row = await trx.insertInto('payments').values(values).returningAll().executeTakeFirstOrThrow();
 *   res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(row));
 * });
 * ```
 */
export async function serveOnServerResponse<DB, Req>(
  options: ResolvedHttpOptions<DB, Req>,
  request: Req,
  res: ServerResponse,
  facts: HttpRequestFacts,
  handler: (trx: Transaction<DB>, context: { scope: string; key: string }) => Promise<void>,
): Promise<void> {
  const before = saveResponse(res);
  let capture: ResponseCapture | undefined;
  try {
    const outcome = await runIdempotentRequest(options, request, facts, async (trx, context) => {
      // A retried attempt (after a serialization failure) starts from `res` as it was: a status
      // or header the failed attempt set must not leak into the response that commits.
      capture?.release();
      restoreResponse(res, before);
      capture = captureServerResponse(res, options.maxResponseBytes);
      await handler(trx, context);
      if (capture.overflowed) {
        throw new UnstorableResponseError({
          ...context,
          reason: 'too_large',
          message: `The response body is larger than maxResponseBytes (${options.maxResponseBytes})`,
        });
      }
      return capture.snapshot();
    });
    // Released only now: what the handler writes after it returned (an un-awaited
    // `res.sendFile()` or pipe) is not part of a response that committed, and must not reach
    // the client ahead of the answer, whatever the transaction's outcome.
    capture?.release();
    // The status line and headers the handler set belong to its response only; a replay or a
    // problem has its own (a handler's "201 Payment Accepted" must not become "500 Payment ...").
    if (outcome.kind === 'replayed' || outcome.kind === 'refused') restoreResponse(res, before);
    sendSnapshot(res, outcome.response);
  } catch (error) {
    capture?.release();
    restoreResponse(res, before);
    throw error;
  }
}
