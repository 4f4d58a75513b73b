/**
 * `POST /payments`: the HTTP face of the `create-payment` operation. The key and the body are
 * checked first (a bad request does not use up its key); then the operation runs, or resumes, or
 * replays, and its response is sent as it was stored.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Kysely } from 'kysely';
import { DEFAULT_REPLAYED_HEADER, readIdempotencyKey } from '../../../src/http/index.ts';
import { type Operation, runOperation } from '../../../src/operations/index.ts';
import type { PaymentResponse } from './create-payment.ts';
import type { Database } from './orders.ts';
import { type PaymentRequest, parsePaymentRequest } from './payment-request.ts';
import { problemFor, RequestProblem, sendProblem } from './problems.ts';

/**
 * The operation's scope. This service has a single caller; one that serves several (merchants,
 * API users) puts the authenticated one in the scope, so that one's key never replays another's
 * payment.
 */
export const PAYMENT_SCOPE = 'payments:create-payment';

const MAX_BODY_BYTES = 16 * 1024;

export interface PaymentsListenerOptions {
  db: Kysely<Database>;
  createPayment: Operation<Database, PaymentRequest, PaymentResponse>;
  /**
   * How long a duplicate that arrives while an attempt holds the payment waits for it (then it
   * gets that attempt's answer) before it is answered 409 with Retry-After.
   */
  waitTimeoutMs: number;
  /** Hears of the 500s. */
  log: (message: string) => void;
}

/**
 * A node:http request listener for the service: `POST /payments`, and a 404 problem for anything
 * else. Every error is answered as problem details.
 *
 * @example
 * ```ts
 * const listener = paymentsListener({ db, createPayment, waitTimeoutMs: 10_000, log });
 * const server = createServer(listener);
 * ```
 */
export function paymentsListener(
  options: PaymentsListenerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { db, createPayment, waitTimeoutMs, log } = options;
  async function createPaymentRoute(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A header sent twice is refused rather than guessed at: pass every value.
    const key = readIdempotencyKey(req.headersDistinct['idempotency-key']);
    const parsed = parsePaymentRequest(await readBody(req));
    if (!parsed.ok) {
      throw new RequestProblem({
        status: 400,
        slug: 'invalid-body',
        title: 'Invalid payment request',
        detail: parsed.detail,
      });
    }
    const { response, replayed } = await runOperation(db, createPayment, {
      scope: PAYMENT_SCOPE,
      key,
      request: parsed.request,
      waitTimeoutMs,
    });
    // The stored JSON text is kept as returned, so a replay sends the first answer's bytes.
    res.writeHead(response.status, {
      'content-type': response.contentType,
      ...(replayed ? { [DEFAULT_REPLAYED_HEADER]: 'true' } : {}),
    });
    res.end(JSON.stringify(response.body));
  }

  return (req, res) => {
    const route =
      req.method === 'POST' && req.url === '/payments'
        ? createPaymentRoute(req, res)
        : Promise.reject(
            new RequestProblem({
              status: 404,
              slug: 'not-found',
              title: 'Not found',
              detail: 'Only POST /payments exists here.',
            }),
          );
    route.catch((error: unknown) => {
      const problem = problemFor(error);
      if (problem.status >= 500 && problem.status !== 503) log(`500: ${describe(error)}`);
      // The client may be gone (it gave up, or the service is stopping): nothing left to answer.
      if (!res.headersSent && !res.destroyed) sendProblem(res, problem);
    });
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new RequestProblem({
        status: 413,
        slug: 'body-too-large',
        title: 'Request body too large',
        detail: 'A payment request is at most 16 KiB.',
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// The library's messages never carry the key; others are the service's own.
function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
