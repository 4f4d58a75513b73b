/**
 * A response compressed by an application's own onSend hook (as @fastify/compress does) reaches
 * the plugin compressed: its Content-Encoding is stored with its bytes, whatever `storedHeaders`
 * says, or a replay would send gzip bytes as plain JSON.
 */
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import type { Transaction } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { idempotency } from '../../src/fastify/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
let baseUrl: string;
let close: () => Promise<void>;

beforeAll(async () => {
  const app = Fastify();
  // Registered before the plugin: a global onSend hook runs before the route's own (the plugin's).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (typeof payload !== 'string') return payload;
    reply.header('content-encoding', 'gzip');
    return gzipSync(payload);
  });
  await app.register(idempotency, { db: fx.db });
  app.post(
    '/payments',
    { config: { idempotency: { scope: () => 'merchant:gzip' } } },
    async (request, reply) => {
      const trx: Transaction<Database> = request.idempotency.trx;
      const row = await trx
        .insertInto('payments')
        .values({ scope: 'merchant:gzip', key: request.idempotency.key, amount: 1 })
        .returning(['id', 'amount'])
        .executeTakeFirstOrThrow();
      return reply.code(201).send({ ...row, padding: 'x'.repeat(200) });
    },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  close = () => app.close();
});
afterAll(() => close());

it('replays a compressed response with its Content-Encoding, so that it decodes the same', async () => {
  const key = uniqueKey();
  const send = () =>
    fetch(`${baseUrl}/payments`, {
      method: 'POST',
      headers: { 'idempotency-key': key, 'content-type': 'application/json' },
      body: '{}',
    });
  const first = await send();
  expect(first.headers.get('content-encoding')).toBe('gzip');
  const firstBody = await first.text(); // fetch decodes gzip
  expect(JSON.parse(firstBody)).toMatchObject({ amount: 1 });

  const replay = await send();
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(replay.headers.get('content-encoding')).toBe('gzip');
  expect(await replay.text()).toBe(firstBody);
  expect(await fx.countPayments(key)).toBe(1);
});
