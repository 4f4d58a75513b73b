import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { scheduleCleanup } from '../../src/index.ts';
import { idempotent } from '../../src/node-http/index.ts';
import { problemFor, RequestError, sendProblem } from './problem.ts';
import { createDb, createPool, type Database, toPayment } from './schema.ts';

export const APPLICATION_NAME = 'payment-service';

const MAX_BODY_BYTES = 16 * 1024;
const MERCHANT_ID = /^[A-Za-z0-9_-]{1,64}$/;

const createPaymentBody = z.strictObject({
  amount_cents: z.int().positive().max(100_000_000),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as EUR'),
});

export interface PaymentService {
  server: Server;
  /**
   * Stops accepting requests, lets those in flight finish, stops the ledger cleanup, and closes
   * the pool.
   */
  close(): Promise<void>;
}

/**
 * `POST /payments`: creates a payment once per (merchant, Idempotency-Key), and answers every
 * retry with the response of the first call.
 */
export function createPaymentService(
  connectionString: string,
  options: { log?: (message: string) => void; maxConnections?: number } = {},
): PaymentService {
  const log = options.log ?? (() => undefined);
  const pool = createPool(connectionString, {
    max: options.maxConnections ?? 16,
    applicationName: APPLICATION_NAME,
    onError: (error) => log(`connection lost: ${error.message}`),
  });
  const db = createDb(pool);
  // Expired keys are deleted in the background; across several instances, one works each tick.
  const cleanup = scheduleCleanup(db, {
    intervalMs: 5 * 60_000,
    onError: (error) => log(`ledger cleanup failed: ${describe(error)}`),
  });

  const createPayment = idempotent<Database, PaymentBody>(
    {
      db,
      // Per principal: one merchant's key can never replay another merchant's payment.
      scope: (req) => `merchant:${String(req.headers['merchant-id'])}:create-payment`,
      // A duplicate arriving while the first call is in flight gets a 409 and retries, rather
      // than holding a pooled connection while it waits.
      onConcurrent: 'reject',
    },
    async (req, res, { trx, key, body }) => {
      // Stands in for slower database work in the same transaction (a balance check, a fraud
      // rule), and makes duplicates overlap in flight. A call to a card network would not belong
      // here: it would not roll back with the transaction.
      await sleep(50 + Math.random() * 200);
      const row = await trx
        .insertInto('payments')
        .values({
          merchant_id: String(req.headers['merchant-id']),
          amount_cents: body.amount_cents,
          currency: body.currency,
          idempotency_key: key,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      // Sent only once it has committed with the payment; replays get these bytes back.
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(toPayment(row)));
    },
  );

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST' || req.url !== '/payments') {
      throw new RequestError(404, 'Not found', 'Only POST /payments exists here');
    }
    // Stands in for the authenticated principal; a real service takes it from the credentials.
    const merchantId = req.headers['merchant-id'];
    if (typeof merchantId !== 'string' || !MERCHANT_ID.test(merchantId)) {
      throw new RequestError(400, 'Invalid Merchant-Id', 'Send a Merchant-Id header');
    }
    // Validated before the idempotent part: a malformed request must not use up its key.
    await createPayment(req, res, parseBody(await readBody(req)));
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      const problem = problemFor(error);
      if (problem.status >= 500) log(`500 on ${req.url}: ${describe(error)}`);
      // The client may be gone (it aborted, or we are shutting down); nothing left to answer.
      if (!res.headersSent && !res.destroyed) sendProblem(res, problem);
    });
  });

  return {
    server,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await cleanup.stop();
      await db.destroy();
    },
  };
}

type PaymentBody = z.infer<typeof createPaymentBody>;

function parseBody(text: string): PaymentBody {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new RequestError(400, 'Invalid JSON', 'The request body is not JSON');
  }
  const result = createPaymentBody.safeParse(json);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new RequestError(400, 'Invalid payment', issues.join('; '));
  }
  return result.data;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RequestError(413, 'Body too large', 'At most 16 KiB');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
