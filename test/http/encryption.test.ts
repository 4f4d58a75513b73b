/**
 * The HTTP adapters pass `encryption` through to the ledger: the stored status, headers and body
 * are encrypted, a replay is byte for byte the first response, and a route without the key
 * answers an encrypted entry with a 500 and runs nothing.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type IdempotencyError,
  InvalidIdempotencyOptionsError,
  ResponseDecryptionError,
  responseEncryption,
} from '../../src/index.ts';
import { idempotent } from '../../src/node-http/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const encryption = responseEncryption({ keys: [{ id: 'http-1', key: randomBytes(32) }] });
const reported: IdempotencyError[] = [];
let handlerRuns = 0;
let baseUrl: string;
let close: () => Promise<void>;

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  // Two routes on one ledger: 'encrypted' stores with the key, 'plain' has none.
  const route = (withKey: boolean) =>
    idempotent<Database, Buffer>(
      {
        db: fx.db,
        scope: () => 'tenant:http',
        onError: (error) => reported.push(error),
        ...(withKey ? { encryption } : {}),
      },
      async (_req, res, { trx, key, scope, body }) => {
        handlerRuns += 1;
        const row = await trx
          .insertInto('payments')
          .values({ scope, key, amount: body.length })
          .returning('id')
          .executeTakeFirstOrThrow();
        res.writeHead(201, { 'content-type': 'application/json', location: `/p/${row.id}` });
        res.end(JSON.stringify({ id: String(row.id), iban: 'DE89 3704 0044 0532 0130 00' }));
      },
    );
  // Chosen by a header, not the path: the path is part of the request's fingerprint, and the same
  // request must reach both.
  const routes = { encrypted: route(true), plain: route(false) };
  const server = createServer((req, res) => {
    const handle = routes[req.headers['x-route'] as keyof typeof routes];
    readBody(req)
      .then((body) => handle(req, res, body))
      .catch(() => res.writeHead(500).end());
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise((resolve) => server.close(() => resolve()));
});
afterAll(() => close());

const post = (route: 'encrypted' | 'plain', key: string) =>
  fetch(`${baseUrl}/payments`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'x-route': route },
    body: 'pay',
  });

async function rawResponse(key: string): Promise<string | null> {
  const { rows } = await sql<{ response: string | null }>`
    select response::text as response from idempotency.ledger where key = ${key}`.execute(fx.db);
  return rows[0]?.response ?? null;
}

it('stores the HTTP response encrypted and replays it byte for byte', async () => {
  const key = uniqueKey();
  const first = await post('encrypted', key);
  const firstBody = await first.text();
  expect(first.status).toBe(201);
  expect(firstBody).toContain('DE89');

  const raw = await rawResponse(key);
  expect(raw).not.toBeNull();
  expect(raw).not.toContain('DE89');
  expect(raw).not.toContain('/p/');

  const replay = await post('encrypted', key);
  expect(replay.status).toBe(201);
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.headers.get('location')).toBe(first.headers.get('location'));
  expect(await replay.text()).toBe(firstBody);
  expect(await fx.countPayments(key)).toBe(1);
});

it('answers an encrypted entry read without the key with a 500, running nothing', async () => {
  const key = uniqueKey();
  await (await post('encrypted', key)).text();
  const runs = handlerRuns;
  const before = reported.length;

  const refused = await post('plain', key);
  expect(refused.status).toBe(500);
  expect(refused.headers.get('content-type')).toBe('application/problem+json');
  const problem = await refused.text();
  expect(problem).not.toContain('DE89');
  expect(problem).not.toContain(key);
  expect(handlerRuns).toBe(runs);
  expect(reported.length).toBe(before + 1);
  expect(reported.at(-1)).toBeInstanceOf(ResponseDecryptionError);
  expect(await fx.countPayments(key)).toBe(1);
});

it('refuses an encryption option not built by responseEncryption() at setup, even with seal and open', () => {
  // Duck-typed: a fake would store what its seal() returns and replay what its open() returns.
  const fake = { seal() {}, open() {} };
  const setUp = () =>
    idempotent({ db: fx.db, scope: () => 's', encryption: fake as never }, async () => {});
  expect(setUp).toThrow(InvalidIdempotencyOptionsError);
  expect(setUp).toThrow('encryption: must be built by responseEncryption()');
});
