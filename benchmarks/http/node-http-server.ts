// node:http with idempotency-ledger/node-http (from dist/): the body is read, parsed and validated
// by the server, then handed to the bare handler or to idempotent().
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { ChargeRequest } from '../business.ts';
import { importBuilt } from '../library.ts';
import {
  BARE_PATH,
  type CreatedCharge,
  createHttpCharge,
  type HttpBenchDB,
  IDEMPOTENT_PATH,
  INVALID_BODY,
  idempotencyOptions,
  insertHttpCharge,
  parseChargeRequest,
} from './charge-route.ts';
import { type FrameworkServer, listenOnFreePort } from './framework-server.ts';

type Adapter = typeof import('../../src/node-http/index.ts');
const { idempotent } = await importBuilt<Adapter>('node-http/index.js');

const MAX_BODY_BYTES = 16 * 1024;

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

function send(res: ServerResponse, charge: CreatedCharge): void {
  res.writeHead(201, { 'content-type': 'application/json', location: charge.location });
  res.end(JSON.stringify(charge.body));
}

export const framework: FrameworkServer = {
  name: 'node-http',
  version: process.version,
  start(db) {
    const createIdempotently = idempotent<HttpBenchDB, ChargeRequest>(
      idempotencyOptions(db),
      async (_req, res, { trx, body }) => send(res, await insertHttpCharge(trx, body)),
    );
    const route = async (req: IncomingMessage, res: ServerResponse) => {
      const path = req.method === 'POST' ? req.url : undefined;
      if (path !== BARE_PATH && path !== IDEMPOTENT_PATH) {
        res.writeHead(404).end();
        return;
      }
      const request = parseChargeRequest(await readJson(req));
      if (!request) {
        res.writeHead(INVALID_BODY.status, { 'content-type': INVALID_BODY.contentType });
        res.end(JSON.stringify(INVALID_BODY.body));
      } else if (path === BARE_PATH) {
        send(res, await createHttpCharge(db, request));
      } else {
        await createIdempotently(req, res, request);
      }
    };
    const server = createServer((req, res) => {
      route(req, res).catch((error: unknown) => {
        process.stderr.write(`node-http: 500: ${String(error)}\n`);
        if (res.headersSent) res.destroy();
        else res.writeHead(500).end();
      });
    });
    return listenOnFreePort(server);
  },
};
