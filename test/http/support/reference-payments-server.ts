/**
 * A payment service on bare node:http that follows the example contract (examples/http/), used
 * to test the conformance kit itself: run as is, it keeps the contract; with `FAULT` set it
 * breaks it in one known way (faulty-payments.ts), and the kit must say which check failed.
 *
 *   DATABASE_URL=postgres://... PORT=0 [FAULT=...] [ON_CONCURRENT=reject] \
 *     node test/http/support/reference-payments-server.ts
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import {
  announceAndStopOnSignal,
  merchantIdOf,
  openPaymentsDatabase,
  portFromEnvironment,
  problems,
  toPayment,
  validatePayment,
} from '../../../examples/http/shared/payments.ts';
import {
  type HttpRequestFacts,
  resolveHttpOptions,
  serveOnServerResponse,
} from '../../../src/http/index.ts';
import { type Fault, faultyPayment, parseFault, prepareFault } from './faulty-payments.ts';

const PATH = '/payments';
const fault: Fault | undefined = parseFault(process.env.FAULT);
const db = await openPaymentsDatabase();
if (fault) await prepareFault(fault, db);
const options = resolveHttpOptions(
  {
    db,
    scope: (req: IncomingMessage) =>
      `merchant:${merchantIdOf(req.headers['merchant-id'])}:create-payment`,
    // The example contract allows either: duplicates in flight wait and replay, or get a 409.
    onConcurrent: process.env.ON_CONCURRENT === 'reject' ? 'reject' : 'wait',
  },
  'reference server',
);

const server = http.createServer((req, res) => {
  route(req, res).catch((error: unknown) => {
    process.stderr.write(`request failed: ${String(error)}\n`);
    if (!res.headersSent) sendProblem(res, { title: 'Internal server error', status: 500 });
    else res.destroy();
  });
});

async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST' || req.url !== PATH) return sendProblem(res, problems.notFound);
  const merchantId = merchantIdOf(req.headers['merchant-id']);
  if (!merchantId) return sendProblem(res, problems.unauthenticated);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readBody(req));
  } catch {
    return sendProblem(res, problems.invalidBody('body: not JSON'));
  }
  const payment = validatePayment(parsed);
  if (!payment.ok) return sendProblem(res, payment.problem);
  const facts: HttpRequestFacts = {
    method: 'POST',
    target: PATH,
    keyHeader: req.headersDistinct['idempotency-key'],
    body: payment.value,
    header: (name) => req.headersDistinct[name]?.join(', '),
  };
  const insert = (trx: typeof db, key: string) =>
    trx
      .insertInto('payments')
      .values({ merchant_id: merchantId, idempotency_key: key, ...payment.value })
      .returningAll()
      .executeTakeFirstOrThrow();

  if (fault) return faultyPayment(fault, { db, options, req, res, facts, insert });
  await serveOnServerResponse(options, req, res, facts, async (trx, { key }) => {
    const row = await insert(trx, key);
    res
      .writeHead(201, { 'content-type': 'application/json', location: `/payments/${row.id}` })
      .end(JSON.stringify(toPayment(row)));
  });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

function sendProblem(res: ServerResponse, problem: { status: number; title: string }): void {
  res
    .writeHead(problem.status, { 'content-type': 'application/problem+json' })
    .end(JSON.stringify(problem));
}

server.listen(portFromEnvironment(), '127.0.0.1', () => {
  announceAndStopOnSignal(
    server,
    () => new Promise((resolve) => server.close(() => resolve())),
    db,
  );
});
