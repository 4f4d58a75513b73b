/**
 * idempotency-ledger/fastify: a real Fastify 5 app over real sockets and a real Postgres; each
 * test counts the business rows its requests wrote, and compares replays byte for byte.
 */
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotency } from '../../src/fastify/index.ts';
import {
  type IdempotencyError,
  InvalidIdempotencyOptionsError,
  UnstorableResponseError,
} from '../../src/index.ts';
import { deferred, waitForLockWaiters } from '../support/barrier.ts';
import { countCheckedOutClients } from '../support/database.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const MERCHANT = 'merchant-7f3a';
const scopeOf = (request: FastifyRequest) => `merchant:${String(request.headers['merchant-id'])}`;
// Without a declared database type, request.idempotency.trx is a Transaction<any>.
const trxOf = (request: FastifyRequest): Transaction<Database> => request.idempotency.trx;

let app: FastifyInstance;
let baseUrl: string;
// Lets a test hold a request inside its transaction while duplicates arrive.
let hold: { inside: () => void; release: Promise<void> } | undefined;
const libraryErrors: IdempotencyError[] = [];
const handlerErrors: unknown[] = [];
const attemptsByKey = new Map<string, number>();

async function insertPayment(request: FastifyRequest, amount: number) {
  const { key, scope } = request.idempotency;
  return trxOf(request)
    .insertInto('payments')
    .values({ scope, key, amount })
    .returning(['id', 'amount'])
    .executeTakeFirstOrThrow();
}

async function waitIfHeld() {
  if (!hold) return;
  const { inside, release } = hold;
  hold = undefined;
  inside();
  await release;
}

beforeAll(async () => {
  // Checked at COMMIT, after the handler produced its response: a second row 1 fails the commit.
  await sql`create table deferred_check (id int,
              constraint deferred_check_unique unique (id) deferrable initially deferred)`.execute(
    fx.db,
  );
  await sql`insert into deferred_check values (1)`.execute(fx.db);
  // A row here fails COMMIT with a serialization failure, which withIdempotency retries.
  await sql`create table retry_trap (id int)`.execute(fx.db);
  await sql`create function retry_trap_fail() returns trigger language plpgsql as $$
              begin raise exception 'serialization failure (test)' using errcode = '40001'; end $$`.execute(
    fx.db,
  );
  await sql`create constraint trigger retry_trap_at_commit after insert on retry_trap
              deferrable initially deferred for each row execute function retry_trap_fail()`.execute(
    fx.db,
  );

  app = Fastify();
  await app.register(idempotency, { db: fx.db, onError: (error) => libraryErrors.push(error) });
  app.setErrorHandler((error, _request, reply) => {
    handlerErrors.push(error);
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    return reply.code(status).send({ handled: (error as Error).message });
  });
  // An async onSend hook before the plugin's (as compression or tracing plugins add): the
  // handler's payload reaches the plugin a few turns of the event loop after reply.send.
  app.addHook('onSend', async (request, _reply, payload) => {
    if (request.url.startsWith('/slow/')) {
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    }
    return payload;
  });
  const config = (extra: object = {}) => ({ idempotency: { scope: scopeOf, ...extra } });
  const nextAttempt = (request: FastifyRequest) => {
    const { key } = request.idempotency;
    const attempt = (attemptsByKey.get(key) ?? 0) + 1;
    attemptsByKey.set(key, attempt);
    return attempt;
  };

  for (const path of ['/payments', '/slow/payments']) {
    app.post(path, { config: config() }, async (request, reply) => {
      const row = await insertPayment(request, (request.body as { amount: number }).amount);
      await waitIfHeld();
      return reply
        .code(201)
        .header('location', `/payments/${row.id}`)
        .header('x-trace', 'first')
        .send(row);
    });
  }
  for (const path of ['/send-then-throw', '/slow/send-then-throw']) {
    app.post(path, { config: config() }, async (request, reply) => {
      const row = await insertPayment(request, 2);
      reply.code(201).header('location', `/payments/${row.id}`).send(row);
      throw new Error('failed after sending');
    });
  }
  app.post('/retried', { config: config() }, async (request, reply) => {
    const attempt = nextAttempt(request);
    const row = await insertPayment(request, attempt);
    if (attempt === 1) {
      await sql`insert into retry_trap values (1)`.execute(trxOf(request));
      reply.header('x-first-attempt', 'yes');
    }
    return reply
      .code(201)
      .header('location', `/payments/${row.id}`)
      .header('x-attempt', String(attempt))
      .send({ attempt, ...row });
  });
  app.post('/web-response', { config: config() }, async (request) => {
    const row = await insertPayment(request, 10);
    return new Response(`payment ${row.id}`, {
      status: 201,
      headers: { 'content-type': 'text/plain; charset=utf-8', location: `/payments/${row.id}` },
    });
  });
  app.post('/later', { config: config() }, async (request, reply) => {
    const row = await insertPayment(request, 11);
    setImmediate(() => reply.code(201).send({ later: true, id: row.id }));
    return reply;
  });
  app.post('/reject/payments', { config: config({ onConcurrent: 'reject' }) }, async (request) => {
    const row = await insertPayment(request, 1);
    await waitIfHeld();
    return row;
  });
  app.post('/flaky', { config: config() }, async (request, reply) => {
    const attempt = nextAttempt(request);
    const row = await insertPayment(request, attempt);
    const failure = (request.body as { fail: string }).fail;
    if (attempt === 1 && failure === 'status') return reply.code(503).send({ retry: true });
    if (attempt === 1 && failure === 'throw') throw new Error('handler failed');
    return reply.code(201).send(row);
  });
  app.post(
    '/serialized',
    {
      config: config(),
      schema: {
        response: {
          201: {
            type: 'object',
            properties: { id: { type: 'string' }, amount: { type: 'integer' } },
            required: ['id', 'amount'],
          },
        },
      },
    },
    async (request, reply) => {
      const row = await insertPayment(request, 3);
      // The schema's serializer drops what it does not name.
      reply.code(201);
      return { ...row, internal_note: 'not for clients', amount: row.amount };
    },
  );
  app.post(
    '/serialization-fails',
    {
      config: config(),
      schema: { response: { 201: { type: 'object', required: ['id', 'missing'] } } },
    },
    async (request, reply) => {
      const row = await insertPayment(request, 4);
      return reply.code(201).send(row);
    },
  );
  app.post('/commit-fails', { config: config() }, async (request, reply) => {
    const row = await insertPayment(request, 5);
    await sql`insert into deferred_check values (1)`.execute(trxOf(request));
    return reply.code(201).header('location', `/payments/${row.id}`).send(row);
  });
  app.post('/silent', { config: config() }, async (request) => {
    await insertPayment(request, 6);
  });
  app.post('/large', { config: config({ maxResponseBytes: 64 }) }, async (request) => {
    await insertPayment(request, 7);
    return { padding: 'x'.repeat(100) };
  });
  app.post('/stream', { config: config() }, async (request, reply) => {
    await insertPayment(request, 8);
    reply.code(201).type('text/plain; charset=utf-8');
    return Readable.from(['streamed ', 'in ', Buffer.from([0xe2, 0x9c, 0x93])]);
  });
  app.post('/empty', { config: config() }, async (request, reply) => {
    await insertPayment(request, 9);
    return reply.code(204).send();
  });
  app.get('/payments', async (request) => ({
    listed: true,
    key: request.headers['idempotency-key'],
  }));

  app.get('/outside', async (request) => {
    try {
      return { key: request.idempotency.key };
    } catch (error) {
      return { refused: (error as Error).message };
    }
  });
  // Routes of an encapsulated plugin registered later see the plugin's onRoute hook too.
  await app.register(
    async (child) => {
      child.post('/payments', { config: config() }, async (request, reply) => {
        return reply.code(201).send(await insertPayment(request, 12));
      });
    },
    { prefix: '/v2' },
  );

  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address !== 'object') throw new Error('not listening');
  baseUrl = `http://127.0.0.1:${address.port}`;
});
afterAll(async () => {
  await app?.close();
});

const post = (
  path: string,
  key: string | undefined,
  body: unknown = { amount: 1 },
  init: RequestInit = {},
) =>
  fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'merchant-id': MERCHANT,
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    body: JSON.stringify(body),
    ...init,
  });

/** Reads a problem response: its JSON, after checking it names neither the key nor the scope. */
async function problemOf(response: Response, key?: string) {
  expect(response.headers.get('content-type')).toBe('application/problem+json');
  const text = await response.text();
  if (key !== undefined) expect(text).not.toContain(key);
  expect(text).not.toContain(MERCHANT);
  return JSON.parse(text) as { type: string; status: number };
}

const bytesOf = async (response: Response) => Buffer.from(await response.arrayBuffer());

describe('the idempotency plugin on Fastify 5', () => {
  it('executes once, then replays status, stored headers and body bytes', async () => {
    const key = uniqueKey();
    const first = await post('/payments', key, { amount: 5 });
    const firstBody = await bytesOf(first);
    expect(first.status).toBe(201);
    expect(first.headers.get('location')).toMatch(/^\/payments\/\d+$/);
    expect(first.headers.get('x-trace')).toBe('first');
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    const again = await post('/payments', key, { amount: 5 });
    expect(again.status).toBe(201);
    expect((await bytesOf(again)).equals(firstBody)).toBe(true);
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    // Not a stored header: sent the first time only.
    expect(again.headers.get('x-trace')).toBeNull();
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('takes a bare key and the same key as a quoted string for one key', async () => {
    const key = uniqueKey();
    const bare = await post('/payments', key);
    const quoted = await post('/payments', `"${key}"`);
    expect(quoted.headers.get('idempotent-replayed')).toBe('true');
    expect((await bytesOf(quoted)).equals(await bytesOf(bare))).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses a missing key with a 400 problem, and executes nothing', async () => {
    const response = await post('/payments', undefined);
    expect(response.status).toBe(400);
    expect(await problemOf(response)).toMatchObject({
      type: 'urn:idempotency-ledger:problem:missing-key',
      status: 400,
    });
  });

  it('refuses an Idempotency-Key header sent twice with a 400 problem', async () => {
    const key = uniqueKey();
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const outgoing = httpRequest(`${baseUrl}/payments`, {
          method: 'POST',
          // Two header lines, as a client or a proxy may send them (raw form: no Host added).
          headers: [
            'host',
            new URL(baseUrl).host,
            'content-type',
            'application/json',
            'merchant-id',
            MERCHANT,
            'idempotency-key',
            key,
            'idempotency-key',
            `${key}-other`,
          ],
        });
        outgoing.on('error', reject);
        outgoing.on('response', (incoming) => {
          const chunks: Buffer[] = [];
          incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
          incoming.on('end', () =>
            resolve({ status: incoming.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
          );
        });
        outgoing.end(JSON.stringify({ amount: 1 }));
      },
    );
    expect(status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({ type: 'urn:idempotency-ledger:problem:invalid-key' });
    expect(text).not.toContain(key);
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('refuses the same key with another body with a 422 problem', async () => {
    const key = uniqueKey('secret');
    expect((await post('/payments', key, { amount: 5 })).status).toBe(201);
    const reused = await post('/payments', key, { amount: 6 });
    expect(reused.status).toBe(422);
    expect(await problemOf(reused, key)).toMatchObject({
      type: 'urn:idempotency-ledger:problem:key-reused',
    });
    expect(reused.headers.get('location')).toBeNull();
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('makes a duplicate in flight wait for the first request, then replay it', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    hold = { inside: () => inside.resolve(), release: release.promise };
    const first = post('/payments', key);
    await inside.promise;
    const duplicate = post('/payments', key);
    await waitForLockWaiters(fx.db, 1);
    release.resolve();
    const firstResponse = await first;
    const replay = await duplicate;
    expect(firstResponse.status).toBe(201);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect((await bytesOf(replay)).equals(await bytesOf(firstResponse))).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("answers a duplicate in flight with 409 and Retry-After under onConcurrent 'reject'", async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    hold = { inside: () => inside.resolve(), release: release.promise };
    const first = post('/reject/payments', key);
    await inside.promise;
    const conflict = await post('/reject/payments', key);
    release.resolve();
    expect(conflict.status).toBe(409);
    expect(Number(conflict.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await problemOf(conflict, key)).toMatchObject({
      type: 'urn:idempotency-ledger:problem:request-in-progress',
    });
    expect((await first).status).toBe(200);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('rolls back a 5xx and sends it as produced, so that the retry executes', async () => {
    const key = uniqueKey();
    const failed = await post('/flaky', key, { fail: 'status' });
    expect(failed.status).toBe(503);
    expect(await failed.json()).toEqual({ retry: true });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retried = await post('/flaky', key, { fail: 'status' });
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("passes a thrown error to Fastify's error handler unchanged and stores nothing", async () => {
    const key = uniqueKey();
    const before = handlerErrors.length;
    const failed = await post('/flaky', key, { fail: 'throw' });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ handled: 'handler failed' });
    expect(handlerErrors.slice(before)).toEqual([new Error('handler failed')]);
    expect(await fx.countPayments(key)).toBe(0);

    const retried = await post('/flaky', key, { fail: 'throw' });
    expect(retried.status).toBe(201);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('never lets the client see a response whose commit failed', async () => {
    const key = uniqueKey();
    const response = await post('/commit-fails', key);
    expect(response.status).toBe(500);
    // The deferred unique constraint, reported by COMMIT, reached the error handler instead.
    expect(await response.json()).toEqual({ handled: expect.stringContaining('deferred_check') });
    expect(response.headers.get('location')).toBeNull();
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it("stores the bytes of a response schema's serializer and replays them", async () => {
    const key = uniqueKey();
    const first = await post('/serialized', key);
    const firstBody = await bytesOf(first);
    expect(first.status).toBe(201);
    expect(JSON.parse(firstBody.toString())).toEqual({ id: expect.any(String), amount: 3 });
    const again = await post('/serialized', key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await bytesOf(again)).equals(firstBody)).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("rolls back when the response fails its schema, and sends Fastify's error", async () => {
    const key = uniqueKey();
    const response = await post('/serialization-fails', key);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ handled: expect.stringContaining('missing') });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('buffers a stream response, commits it and replays its bytes', async () => {
    const key = uniqueKey();
    const first = await post('/stream', key);
    const firstBody = await bytesOf(first);
    expect(first.status).toBe(201);
    expect(firstBody.toString('utf8')).toBe('streamed in ✓');
    const again = await post('/stream', key);
    expect(again.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect((await bytesOf(again)).equals(firstBody)).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('replays a response without a body as one', async () => {
    const key = uniqueKey();
    const first = await post('/empty', key);
    expect(first.status).toBe(204);
    const again = await post('/empty', key);
    expect(again.status).toBe(204);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('content-type')).toBeNull();
    expect(await again.text()).toBe('');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('answers a handler that sends nothing with a 500 problem, and rolls it back', async () => {
    const key = uniqueKey();
    const response = await post('/silent', key);
    expect(response.status).toBe(500);
    expect(await problemOf(response, key)).toMatchObject({
      type: 'urn:idempotency-ledger:problem:internal-error',
    });
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('refuses to store a response larger than maxResponseBytes, and rolls it back', async () => {
    const key = uniqueKey();
    const before = libraryErrors.length;
    const response = await post('/large', key);
    expect(response.status).toBe(500);
    expect(await problemOf(response, key)).toMatchObject({
      type: 'urn:idempotency-ledger:problem:response-not-storable',
    });
    expect(libraryErrors.slice(before)).toEqual([expect.any(UnstorableResponseError)]);
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('commits the work of a client that went away, and replays it to its retry', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    hold = { inside: () => inside.resolve(), release: release.promise };
    const controller = new AbortController();
    const abandoned = post('/payments', key, { amount: 1 }, { signal: controller.signal });
    await inside.promise;
    controller.abort();
    await expect(abandoned).rejects.toThrow();
    release.resolve();
    await expect
      .poll(() => fx.countEntries(key), { timeout: 30_000, message: 'the ledger entry' })
      .toBe(1);
    await expect
      .poll(() => countCheckedOutClients(fx.pool), { timeout: 30_000, message: 'clients back' })
      .toBe(0);
    const retry = await post('/payments', key, { amount: 1 });
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('replays through an async onSend hook of the application', async () => {
    const key = uniqueKey();
    const first = await post('/slow/payments', key);
    expect(first.status).toBe(201);
    const again = await post('/slow/payments', key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await bytesOf(again)).equals(await bytesOf(first))).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('sends the error, never the 201, of a handler that throws after reply.send', async () => {
    for (const path of ['/send-then-throw', '/slow/send-then-throw']) {
      const key = uniqueKey();
      const response = await post(path, key);
      expect(response.status).toBe(500);
      expect(response.headers.get('location')).toBeNull();
      expect(await response.json()).toEqual({ handled: 'failed after sending' });
      expect(await fx.countPayments(key)).toBe(0);
    }
  });

  it('sends only the response of the attempt that committed when the transaction is retried', async () => {
    const key = uniqueKey();
    const response = await post('/retried', key);
    const body = await bytesOf(response);
    expect(response.status).toBe(201);
    expect(response.headers.get('x-attempt')).toBe('2');
    // Set by the first attempt only, which rolled back.
    expect(response.headers.get('x-first-attempt')).toBeNull();
    expect(JSON.parse(body.toString())).toMatchObject({ attempt: 2, amount: 2 });
    const again = await post('/retried', key);
    expect((await bytesOf(again)).equals(body)).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('stores a fetch Response: its status, headers and body', async () => {
    const key = uniqueKey();
    const first = await post('/web-response', key);
    expect(first.status).toBe(201);
    const body = await bytesOf(first);
    expect(body.toString()).toMatch(/^payment \d+$/);
    const again = await post('/web-response', key);
    expect(again.status).toBe(201);
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect((await bytesOf(again)).equals(body)).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('waits for a handler that returns reply and sends later', async () => {
    const key = uniqueKey();
    const first = await post('/later', key);
    expect(first.status).toBe(201);
    const again = await post('/later', key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await bytesOf(again)).equals(await bytesOf(first))).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('applies to the routes of an encapsulated plugin', async () => {
    const key = uniqueKey();
    expect((await post('/v2/payments', key)).status).toBe(201);
    const again = await post('/v2/payments', key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses to read request.idempotency on a route without the config', async () => {
    const response = await fetch(`${baseUrl}/outside`);
    expect(await response.json()).toEqual({
      refused: expect.stringContaining('config.idempotency'),
    });
  });

  it('leaves a GET route untouched, key or not', async () => {
    const response = await fetch(`${baseUrl}/payments`, { headers: { 'idempotency-key': 'k' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('idempotent-replayed')).toBeNull();
    expect(await response.json()).toEqual({ listed: true, key: 'k' });
  });
});

describe('setting the plugin up', () => {
  it('refuses config.idempotency on a GET route when the route is added', async () => {
    const other = Fastify();
    await other.register(idempotency, { db: fx.db });
    expect(() =>
      other.get('/x', { config: { idempotency: { scope: () => 's' } } }, async () => 'x'),
    ).toThrow(InvalidIdempotencyOptionsError);
    await other.close();
  });

  it('refuses invalid route options when the route is added, not at the first request', async () => {
    const other = Fastify();
    await other.register(idempotency, { db: fx.db });
    expect(() =>
      other.post(
        '/x',
        { config: { idempotency: { scope: 'not a function' as never } } },
        async () => 'x',
      ),
    ).toThrow(/scope: must be a function/);
    await other.close();
  });

  it('refuses a plugin registered without a database', async () => {
    const other = Fastify();
    await expect(other.register(idempotency, { db: undefined as never })).rejects.toThrow(
      InvalidIdempotencyOptionsError,
    );
    await other.close();
  });
});
