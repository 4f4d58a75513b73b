/**
 * The Fastify app the adapter's tests talk to, over a real socket: the plugin registered once,
 * and a route for each way a handler can answer. `useFastifyApp()` starts it (on a fresh ledger
 * fixture) before a test file's tests and closes it after them.
 */
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { type Kysely, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, expect } from 'vitest';
import { idempotency } from '../../src/fastify/index.ts';
import type { IdempotencyError } from '../../src/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, useLedgerFixture } from '../support/ledger-fixture.ts';

export const MERCHANT = 'merchant-7f3a';
const scopeOf = (request: FastifyRequest) => `merchant:${String(request.headers['merchant-id'])}`;
// Without a declared database type, request.idempotency.trx is a Transaction<any>.
const trxOf = (request: FastifyRequest): Transaction<Database> => request.idempotency.trx;

let running: FastifyInstance | undefined;
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

/**
 * Makes the next request that reaches a holding route (`/payments`, `/reject/payments`) stop
 * inside its transaction, after its write, until `release()`.
 */
function holdNextRequest() {
  const inside = deferred();
  const release = deferred();
  hold = { inside: () => inside.resolve(), release: release.promise };
  return { inside: inside.promise, release: () => release.resolve() };
}

/** POSTs `body` as JSON, as the merchant, with `key` as the Idempotency-Key unless undefined. */
function post(
  path: string,
  key: string | undefined,
  body: unknown = { amount: 1 },
  init: RequestInit = {},
) {
  return fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'merchant-id': MERCHANT,
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    body: JSON.stringify(body),
    ...init,
  });
}

/** Reads a problem response: its JSON, after checking it names neither the key nor the scope. */
export async function problemOf(response: Response, key?: string) {
  expect(response.headers.get('content-type')).toBe('application/problem+json');
  const text = await response.text();
  if (key !== undefined) expect(text).not.toContain(key);
  expect(text).not.toContain(MERCHANT);
  return JSON.parse(text) as { type: string; status: number };
}

export const bytesOf = async (response: Response) => Buffer.from(await response.arrayBuffer());

/** The ledger fixture and the app, started before the file's tests and closed after them. */
export function useFastifyApp() {
  const fx = useLedgerFixture();
  beforeAll(async () => {
    await createTables(fx.db);
    const app = await buildApp(fx.db);
    running = app;
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (address === null || typeof address !== 'object') throw new Error('not listening');
    baseUrl = `http://127.0.0.1:${address.port}`;
  });
  afterAll(async () => {
    await running?.close();
  });
  return {
    fx,
    post,
    holdNextRequest,
    libraryErrors,
    handlerErrors,
    url: (path: string) => `${baseUrl}${path}`,
  };
}

async function createTables(db: Kysely<Database>) {
  // Checked at COMMIT, after the handler produced its response: a second row 1 fails the commit.
  await sql`create table deferred_check (id int,
              constraint deferred_check_unique unique (id) deferrable initially deferred)`.execute(
    db,
  );
  await sql`insert into deferred_check values (1)`.execute(db);
  // A row here fails COMMIT with a serialization failure, which withIdempotency retries.
  await sql`create table retry_trap (id int)`.execute(db);
  await sql`create function retry_trap_fail() returns trigger language plpgsql as $$
              begin raise exception 'serialization failure (test)' using errcode = '40001'; end $$`.execute(
    db,
  );
  await sql`create constraint trigger retry_trap_at_commit after insert on retry_trap
              deferrable initially deferred for each row execute function retry_trap_fail()`.execute(
    db,
  );
}

async function buildApp(db: Kysely<Database>): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(idempotency, { db, onError: (error) => libraryErrors.push(error) });
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
    (child, _options, done) => {
      child.post('/payments', { config: config() }, async (request, reply) => {
        return reply.code(201).send(await insertPayment(request, 12));
      });
      done();
    },
    { prefix: '/v2' },
  );
  return app;
}
