import { once } from 'node:events';
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Kysely, Transaction } from 'kysely';
import {
  type HttpIdempotencyOptions,
  type HttpRequestFacts,
  resolveHttpOptions,
  serveOnServerResponse,
} from '../../../src/http/index.ts';
import type { IdempotencyError } from '../../../src/index.ts';
import type { Database } from '../../support/ledger-fixture.ts';

/** Headers an earlier middleware sets on every response, before the idempotent handler runs. */
export const MIDDLEWARE_HEADERS = { 'x-powered-by': 'middleware', 'cache-control': 'no-store' };

export type RouteHandler = (
  trx: Transaction<Database>,
  res: ServerResponse,
  context: { scope: string; key: string; body: Buffer },
) => Promise<void>;

/** What the server's error handler saw of `res` when serveOnServerResponse rethrew. */
export interface ErrorHandlerView {
  error: unknown;
  headersSent: boolean;
  statusCode: number;
  statusMessage: string;
  headers: OutgoingHttpHeaders;
}

export interface TestServer {
  port: number;
  /** Every error serveOnServerResponse rethrew, with the state of `res` at that moment. */
  errors: ErrorHandlerView[];
  /** Library errors passed to onError. */
  reported: IdempotencyError[];
  /** The status of each response when its 'finish' (listened to by the middleware) came. */
  finished: number[];
  close(): Promise<void>;
}

/**
 * A node:http server with one idempotent route, as a user would write it: middleware headers,
 * the body read as bytes, `serveOnServerResponse`, and an error handler that answers 200 with
 * a body of its own after recording what it saw.
 */
export async function startServer(
  db: Kysely<Database>,
  handler: RouteHandler,
  extra: Partial<HttpIdempotencyOptions<Database, IncomingMessage>> = {},
): Promise<TestServer> {
  const errors: ErrorHandlerView[] = [];
  const reported: IdempotencyError[] = [];
  const finished: number[] = [];
  const options = resolveHttpOptions<Database, IncomingMessage>(
    {
      db,
      scope: (req) => `merchant:${String(req.headers['merchant-id'])}`,
      onError: (error) => reported.push(error),
      ...extra,
    },
    'test server',
  );
  const server = createServer(async (req, res) => {
    // No Date header: two responses with the same content are the same bytes.
    res.sendDate = false;
    for (const [name, value] of Object.entries(MIDDLEWARE_HEADERS)) res.setHeader(name, value);
    // As an access logger does: it must see the response that was sent, once.
    res.on('finish', () => finished.push(res.statusCode));
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const facts: HttpRequestFacts = {
      method: req.method ?? 'GET',
      target: req.url ?? '/',
      keyHeader: req.headersDistinct['idempotency-key'],
      body: body.length > 0 ? body : undefined,
      header: (name) => req.headers[name]?.toString(),
    };
    try {
      await serveOnServerResponse(options, req, res, facts, (trx, context) =>
        handler(trx, res, { ...context, body }),
      );
    } catch (error) {
      errors.push({
        error,
        headersSent: res.headersSent,
        statusCode: res.statusCode,
        statusMessage: res.statusMessage,
        headers: res.getHeaders(),
      });
      if (!res.headersSent) res.end('handled by the error handler');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    errors,
    reported,
    finished,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A business write as a handler makes it: the payment row for this scope and key. */
export async function insertPayment(
  trx: Transaction<Database>,
  context: { scope: string; key: string },
): Promise<string> {
  const row = await trx
    .insertInto('payments')
    .values({ scope: context.scope, key: context.key, amount: 100 })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}
