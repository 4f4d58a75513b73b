import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { type HttpOutcome, type ResolvedHttpOptions, runIdempotentRequest } from '../http/index.ts';
import { type Attempt, beginAttempt, endAttempts } from './held-response.ts';
import { replyStateOf, restoreReplyState, sendSnapshot } from './reply-state.ts';
import { requestFactsOf } from './request-facts.ts';
import { runHandler } from './run-handler.ts';

/**
 * Wraps a route's handler: it runs in the request's transaction, and its response, held in the
 * route's onSend hook, goes on to the client only once the transaction committed (or, for a
 * response `storeIf` judges not final, rolled back). A replay or a problem is sent instead of
 * it. An error (the handler's, or the commit's) is thrown to Fastify's error handler, and the
 * held response is never sent.
 */
export function idempotentHandler(
  handler: RouteHandlerMethod,
  // biome-ignore lint/suspicious/noExplicitAny: any database; the route's options carry it
  options: ResolvedHttpOptions<any, FastifyRequest>,
): RouteHandlerMethod {
  return async function handleIdempotently(
    this: FastifyInstance,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    // Status and headers set by hooks before the handler (CORS, request ids...) stay on every
    // answer; what the handler sets belongs to its own response only.
    const before = replyStateOf(reply);
    // The last attempt that ran the handler: its response is the one that committed.
    const last: { attempt?: Attempt } = {};
    let outcome: HttpOutcome;
    try {
      outcome = await runIdempotentRequest(
        options,
        request,
        requestFactsOf(request),
        async (trx, { scope, key }) => {
          // A retried attempt (after a serialization failure) starts from the reply as it was.
          restoreReplyState(reply, before);
          last.attempt = beginAttempt(request, { trx, scope, key });
          return runHandler(handler, this, request, reply, last.attempt, {
            maxResponseBytes: options.maxResponseBytes,
            scope,
            key,
          });
        },
      );
    } catch (error) {
      endAttempts(request);
      restoreReplyState(reply, before);
      throw error;
    }
    endAttempts(request);
    const { attempt } = last;
    if ((outcome.kind === 'executed' || outcome.kind === 'not_stored') && attempt) {
      attempt.release();
    } else if (!reply.sent) {
      restoreReplyState(reply, before);
      sendSnapshot(reply, outcome.response);
    }
    // Settles once the response is sent, as Fastify expects of a handler that sends on its own.
    return reply;
  };
}
