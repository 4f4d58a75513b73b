// A payment service on node:http, with idempotency-ledger/node-http:
//
//   DATABASE_URL=postgres://... PORT=3000 node examples/http/node-http/server.ts
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { idempotent } from '../../../src/node-http/index.ts';
import {
  announceAndStopOnSignal,
  type Database,
  isPaymentId,
  merchantIdOf,
  openPaymentsDatabase,
  type PaymentRequest,
  portFromEnvironment,
  problems,
  toPayment,
  validatePayment,
} from '../shared/payments.ts';

const MAX_BODY_BYTES = 16 * 1024;
const db = await openPaymentsDatabase();

const createPayment = idempotent<Database, PaymentRequest>(
  // Per merchant: one merchant's key can never replay another merchant's payment.
  { db, scope: (req) => `merchant:${req.headers['merchant-id']}:create-payment` },
  async (req, res, { trx, key, body }) => {
    const row = await trx
      .insertInto('payments')
      .values({
        ...body,
        merchant_id: String(req.headers['merchant-id']),
        idempotency_key: key,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    res.writeHead(201, { 'content-type': 'application/json', location: `/payments/${row.id}` });
    res.end(JSON.stringify(toPayment(row)));
  },
);

async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'POST' && url.pathname === '/payments') {
    if (!merchantIdOf(req.headers['merchant-id'])) return send(res, problems.unauthenticated);
    // Read and validated before the idempotent part: a bad request does not use up its key.
    const result = validatePayment(parseJson(await readBody(req)));
    if (!result.ok) return send(res, result.problem);
    return createPayment(req, res, result.value);
  }
  const id = /^\/payments\/([^/]+)$/.exec(url.pathname)?.[1];
  if (req.method === 'GET' && id !== undefined) {
    const row = isPaymentId(id)
      ? await db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!row) return send(res, problems.notFound);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(toPayment(row)));
    return;
  }
  send(res, problems.notFound);
}

function send(res: ServerResponse, problem: { status: number }): void {
  res.writeHead(problem.status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify(problem));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) break;
    chunks.push(chunk);
  }
  return size > MAX_BODY_BYTES ? '' : Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const server = createServer((req, res) => {
  route(req, res).catch((error: unknown) => {
    process.stderr.write(`500: ${error instanceof Error ? error.message : String(error)}\n`);
    if (!res.headersSent) send(res, problems.internal);
    else res.destroy();
  });
});
server.listen(portFromEnvironment(), '127.0.0.1', () => {
  announceAndStopOnSignal(
    server,
    () => new Promise((resolve) => server.close(() => resolve())),
    db,
  );
});
