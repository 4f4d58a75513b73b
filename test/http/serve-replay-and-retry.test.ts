import { Kysely, PostgresDialect } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { deferred, waitForLockWaiters } from '../support/barrier.ts';
import { countCheckedOutClients, newPool } from '../support/database.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { failFirstCommitFor } from './support/forced-serialization-failure.ts';
import {
  insertPayment,
  MIDDLEWARE_HEADERS,
  type RouteHandler,
  startServer,
  type TestServer,
} from './support/node-server.ts';
import { rawRequest } from './support/raw-http.ts';

const fx = useLedgerFixture();
const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(db: Kysely<Database>, handler: RouteHandler, extra = {}) {
  const server = await startServer(db, handler, extra);
  servers.push(server);
  return server;
}

function send(server: TestServer, key: string) {
  return rawRequest(server.port, {
    headers: { 'idempotency-key': key, 'merchant-id': 'm1', 'content-type': 'application/json' },
    body: '{"amount":100}',
  });
}

const createPayment: RouteHandler = async (trx, res, context) => {
  const id = await insertPayment(trx, context);
  res.statusCode = 201;
  res.setHeader('content-type', 'application/json');
  res.setHeader('location', `/payments/${id}`);
  res.setHeader('set-cookie', ['a=1', 'b=2']);
  res.end(Buffer.concat([Buffer.from(`{"id":"${id}"}`), Buffer.from([0x00, 0xfe])]));
};

describe('serveOnServerResponse: replays across restarts, retried transactions', () => {
  it('replays the same bytes after a restart (a new server and pool on the same database)', async () => {
    const key = uniqueKey();
    const storedHeaders = ['content-type', 'location', 'set-cookie'];
    const before = await serve(fx.db, createPayment, { storedHeaders });
    const first = await send(before, key);
    const replay = await send(before, key);
    await before.close();

    const pool = newPool(fx.url);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      const after = await serve(db, createPayment, { storedHeaders });
      const replayAfterRestart = await send(after, key);

      expect(first.status).toBe(201);
      expect(replay.values('set-cookie')).toEqual(['a=1', 'b=2']);
      expect(replay.values('idempotent-replayed')).toEqual(['true']);
      for (const [name, value] of Object.entries(MIDDLEWARE_HEADERS)) {
        expect(replay.values(name)).toEqual([value]);
      }
      expect(Buffer.compare(replay.body, first.body)).toBe(0);
      // Status line, headers in order and body: every byte (the servers send no Date).
      expect(replayAfterRestart.raw.toString('latin1')).toBe(replay.raw.toString('latin1'));
      expect(Buffer.compare(replayAfterRestart.raw, replay.raw)).toBe(0);
      expect(await fx.countPayments(key)).toBe(1);
      expect(countCheckedOutClients(pool)).toBe(0);
    } finally {
      await db.destroy();
    }
  });

  it("sends the last attempt's response after a serialization failure, nothing of the first", async () => {
    const key = uniqueKey();
    const forced = await failFirstCommitFor(fx.db, key);
    let attempt = 0;
    const server = await serve(
      fx.db,
      async (trx, res, context) => {
        attempt += 1;
        await insertPayment(trx, context);
        if (attempt === 1) {
          res.statusCode = 202;
          res.statusMessage = 'First Try';
          res.setHeader('x-first-attempt', 'yes');
          res.setHeader('content-type', 'text/plain');
          res.end('attempt 1');
        } else {
          res.setHeader('x-last-attempt', 'yes');
          res.end('attempt 2');
        }
      },
      { isolationLevel: 'serializable', storedHeaders: ['content-type', 'x-last-attempt'] },
    );
    try {
      const response = await send(server, key);
      expect(await forced.attempts()).toBe(2);
      expect(attempt).toBe(2);
      expect(`${response.status} ${response.statusMessage}`).toBe('200 OK');
      expect(response.body.toString()).toBe('attempt 2');
      expect(response.values('x-last-attempt')).toEqual(['yes']);
      expect(response.values('x-first-attempt')).toEqual([]);
      expect(response.values('content-type')).toEqual([]);
      for (const [name, value] of Object.entries(MIDDLEWARE_HEADERS)) {
        expect(response.values(name)).toEqual([value]);
      }

      const replay = await send(server, key);
      expect(replay.status).toBe(200);
      expect(replay.body.toString()).toBe('attempt 2');
      expect(replay.values('x-last-attempt')).toEqual(['yes']);
      expect(await fx.countPayments(key)).toBe(1);
    } finally {
      await forced.remove();
    }
  });

  it('holds a duplicate until the first request commits, then replays its bytes', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    let runs = 0;
    const server = await serve(fx.db, async (trx, res, context) => {
      runs += 1;
      inside.resolve();
      await release.promise;
      await createPayment(trx, res, context);
    });
    const first = send(server, key);
    await inside.promise;
    const duplicate = send(server, key);
    // The duplicate waits on the first request's claim, in Postgres.
    await waitForLockWaiters(fx.db, 1);
    release.resolve();
    const [a, b] = await Promise.all([first, duplicate]);
    expect(runs).toBe(1);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.values('idempotent-replayed')).toEqual(['true']);
    expect(Buffer.compare(b.body, a.body)).toBe(0);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('sends a 503 as the handler wrote it, stores nothing, and executes the retry', async () => {
    const key = uniqueKey();
    let runs = 0;
    const server = await serve(fx.db, async (trx, res, context) => {
      runs += 1;
      if (runs === 1) {
        await insertPayment(trx, context);
        res.writeHead(503, { 'retry-after': '5', 'content-type': 'text/plain' }).end('busy');
        return;
      }
      await createPayment(trx, res, context);
    });
    const busy = await send(server, key);
    expect(busy.status).toBe(503);
    expect(busy.values('retry-after')).toEqual(['5']);
    expect(busy.body.toString()).toBe('busy');
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
    const retry = await send(server, key);
    expect(retry.status).toBe(201);
    expect(retry.values('idempotent-replayed')).toEqual([]);
    expect(runs).toBe(2);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('answers a conflicting body with 422 and the middleware headers, not the handler', async () => {
    const key = uniqueKey();
    let runs = 0;
    const server = await serve(fx.db, async (trx, res, context) => {
      runs += 1;
      await createPayment(trx, res, context);
    });
    await send(server, key);
    const conflict = await rawRequest(server.port, {
      headers: { 'idempotency-key': key, 'merchant-id': 'm1' },
      body: '{"amount":200}',
    });
    expect(conflict.status).toBe(422);
    expect(conflict.values('content-type')).toEqual(['application/problem+json']);
    expect(conflict.values('location')).toEqual([]);
    expect(conflict.values('cache-control')).toEqual([MIDDLEWARE_HEADERS['cache-control']]);
    expect(runs).toBe(1);
  });
});
