import type { ServerResponse } from 'node:http';
import type { Transaction } from 'kysely';
import { UnstorableResponseError } from '../index.ts';
import type { ResolvedHttpOptions } from './http-idempotency-options.ts';
import type { HttpRequestFacts } from './request-fingerprint.ts';
import { runIdempotentRequest } from './run-idempotent-request.ts';
import {
  captureServerResponse,
  headersOf,
  type ResponseCapture,
  restoreHeaders,
  sendSnapshot,
} from './server-response-capture.ts';

/**
 * {@link runIdempotentRequest} for frameworks that answer on a Node `ServerResponse` (node:http,
 * Express, Connect...): the handler writes its response on `res` as usual; it is buffered,
 * committed with the handler's writes, and only then sent. A replay or a problem is sent on `res`
 * too. Errors the handler throws (and database errors) are rethrown with nothing sent and `res`'s
 * headers as they were, for the framework's error handler.
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
  const headersBefore = headersOf(res);
  let capture: ResponseCapture | undefined;
  try {
    const outcome = await runIdempotentRequest(options, request, facts, async (trx, context) => {
      // A retried attempt (after a serialization failure) starts from the headers as they were.
      restoreHeaders(res, headersBefore);
      capture = captureServerResponse(res, options.maxResponseBytes);
      try {
        await handler(trx, context);
      } finally {
        capture.release();
      }
      if (capture.overflowed) {
        throw new UnstorableResponseError({
          ...context,
          reason: 'too_large',
          message: `The response body is larger than maxResponseBytes (${options.maxResponseBytes})`,
        });
      }
      return capture.snapshot();
    });
    // Headers the handler set belong to its response only; a replay or a problem has its own.
    if (outcome.kind === 'replayed' || outcome.kind === 'refused') {
      restoreHeaders(res, headersBefore);
    }
    sendSnapshot(res, outcome.response);
  } catch (error) {
    capture?.release();
    restoreHeaders(res, headersBefore);
    throw error;
  }
}
