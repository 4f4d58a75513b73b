/**
 * idempotency-ledger/node-http: a plain node:http server over real sockets, a real Postgres. The
 * caller reads the body and hands it over; the adapter fingerprints it and gives it back.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { idempotent } from '../../src/node-http/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
let baseUrl: string;
let close: () => Promise<void>;
const rejections: unknown[] = [];

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  const create = idempotent<Database, Buffer>(
    { db: fx.db, scope: (req) => `tenant:${req.headers['tenant-id']}` },
    async (_req, res, { trx, key, scope, body }) => {
      if (body.toString() === 'throw') throw new Error('refused by the handler');
      const row = await trx
        .insertInto('payments')
        .values({ scope, key, amount: body.length })
        .returning('id')
        .executeTakeFirstOrThrow();
      // Bytes that are not UTF-8: stored as base64, replayed as the same bytes.
      res.writeHead(201, { 'content-type': 'application/octet-stream', 'x-id': String(row.id) });
      res.write(Buffer.from([0xff, 0x00, 0xfe]));
      res.end(body);
    },
  );
  const server = createServer((req, res) => {
    readBody(req)
      .then((body) => create(req, res, body))
      .catch((error: unknown) => {
        rejections.push(error);
        res.writeHead(500).end('answered by the server');
      });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise((resolve) => server.close(() => resolve()));
});
afterAll(() => close());

const post = (key: string, body: string, tenant = 't1') =>
  fetch(`${baseUrl}/upload`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'tenant-id': tenant },
    body,
  });

it('hands the body to the handler and replays a binary response byte for byte', async () => {
  const key = uniqueKey();
  const first = await post(key, 'payload');
  const firstBytes = Buffer.from(await first.arrayBuffer());
  expect(first.status).toBe(201);
  expect(
    firstBytes.equals(Buffer.concat([Buffer.from([0xff, 0x00, 0xfe]), Buffer.from('payload')])),
  ).toBe(true);

  const replay = await post(key, 'payload');
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.headers.get('content-type')).toBe('application/octet-stream');
  expect(Buffer.from(await replay.arrayBuffer()).equals(firstBytes)).toBe(true);
  expect(await fx.countPayments(key)).toBe(1);
});

it('fingerprints the raw bytes: the same key with other bytes is refused', async () => {
  const key = uniqueKey();
  expect((await post(key, 'one')).status).toBe(201);
  const reused = await post(key, 'two');
  expect(reused.status).toBe(422);
  expect(await fx.countPayments(key)).toBe(1);
});

it('keeps scopes apart: the same key from another tenant executes on its own', async () => {
  const key = uniqueKey();
  const a = await (await post(key, 'same', 'a')).arrayBuffer();
  const b = await post(key, 'same', 'b');
  expect(b.headers.get('idempotent-replayed')).toBeNull();
  expect(Buffer.from(await b.arrayBuffer()).equals(Buffer.from(a))).toBe(true);
  expect(await fx.countPayments(key)).toBe(2);
});

it('rejects the returned promise with the handler error, having sent nothing', async () => {
  const key = uniqueKey();
  const before = rejections.length;
  const response = await post(key, 'throw');
  expect(await response.text()).toBe('answered by the server');
  expect(rejections.length).toBe(before + 1);
  expect((rejections.at(-1) as Error).message).toBe('refused by the handler');
  expect(await fx.countEntries(key)).toBe(0);
});
