/**
 * idempotency-ledger/express on Express 5 and Express 4 alike: real apps over real sockets, a real
 * Postgres; each test counts the business rows its requests wrote.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express5 from 'express';
import express4 from 'express4';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotent } from '../../src/express/index.ts';
import { deferred, waitForLockWaiters } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();

beforeAll(async () => {
  await sql`create table deferred_check (id int,
              constraint deferred_check_unique unique (id) deferrable initially deferred)`.execute(
    fx.db,
  );
  await sql`insert into deferred_check values (1)`.execute(fx.db);
});

type ExpressFactory = typeof express5;

/** Serves `app` on a free port of 127.0.0.1. */
async function listen(app: ReturnType<ExpressFactory>) {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
const versions: Array<[string, ExpressFactory]> = [
  ['Express 5', express5],
  ['Express 4', express4],
];

describe.each(versions)('%s', (_name, express) => {
  let baseUrl: string;
  let close: () => Promise<void>;
  // Lets a test hold a request inside its transaction while duplicates arrive.
  let hold: { inside: () => void; release: Promise<void> } | undefined;
  const errors: unknown[] = [];

  beforeAll(async () => {
    const app = express();
    const scope = (req: { get(name: string): string | undefined }) =>
      `merchant:${req.get('merchant-id') ?? 'none'}`;
    const create = (onConcurrent: 'wait' | 'reject') =>
      idempotent({ db: fx.db, scope, onConcurrent }, async (req, res, { trx, key, scope }) => {
        const row = await trx
          .insertInto('payments')
          .values({ scope, key, amount: req.body.amount })
          .returning(['id', 'amount'])
          .executeTakeFirstOrThrow();
        if (hold) {
          hold.inside();
          await hold.release;
        }
        if (req.body.fail === 'status') {
          res.status(503).json({ error: 'try again' });
          return;
        }
        if (req.body.fail === 'throw') throw new Error('handler failed');
        res.status(201).location(`/payments/${row.id}`).set('x-trace', 'first').json(row);
      });
    app.post('/payments', express.json(), create('wait'));
    app.post('/reject/payments', express.json(), create('reject'));
    app.post('/unparsed', create('wait'));
    app.get('/payments', create('wait'), (_req, res) => {
      res.json({ listed: true });
    });
    app.use(
      (
        error: Error,
        _req: express5.Request,
        res: express5.Response,
        _next: express5.NextFunction,
      ) => {
        errors.push(error);
        res.status(500).json({ handled: error.message });
      },
    );
    ({ baseUrl, close } = await listen(app));
  });
  afterAll(() => close());

  const post = (path: string, key: string | undefined, body: unknown) =>
    fetch(`${baseUrl}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'merchant-id': 'm1',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
      },
      body: JSON.stringify(body),
    });
  const payments = (key: string) => fx.countPayments(key);

  it('executes once and replays status, stored headers and body byte for byte', async () => {
    const key = uniqueKey();
    const first = await post('/payments', key, { amount: 5 });
    const firstBody = Buffer.from(await first.arrayBuffer());
    expect(first.status).toBe(201);
    expect(first.headers.get('x-trace')).toBe('first');
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    const again = await post('/payments', `"${key}"`, { amount: 5 });
    expect(again.status).toBe(201);
    expect(Buffer.from(await again.arrayBuffer()).equals(firstBody)).toBe(true);
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    // Not in the allowlist: sent the first time, not stored.
    expect(again.headers.get('x-trace')).toBeNull();
    expect(await payments(key)).toBe(1);
  });

  it('answers a missing key and a reused key with problem details that name neither', async () => {
    const missing = await post('/payments', undefined, { amount: 5 });
    expect(missing.status).toBe(400);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    expect(await missing.json()).toMatchObject({
      type: 'urn:idempotency-ledger:problem:missing-key',
      status: 400,
    });

    const key = uniqueKey('secret');
    expect((await post('/payments', key, { amount: 5 })).status).toBe(201);
    const reused = await post('/payments', key, { amount: 6 });
    expect(reused.status).toBe(422);
    const text = await reused.text();
    expect(JSON.parse(text)).toMatchObject({ type: 'urn:idempotency-ledger:problem:key-reused' });
    expect(text).not.toContain(key);
    expect(text).not.toContain('merchant:m1');
    expect(await payments(key)).toBe(1);
  });

  it('rolls back a 503 so that the retry executes again', async () => {
    const key = uniqueKey();
    const failed = await post('/payments', key, { amount: 7, fail: 'status' });
    expect(failed.status).toBe(503);
    expect(await payments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('passes a thrown error to the error handler, stores nothing, and lets the key execute later', async () => {
    const key = uniqueKey();
    const before = errors.length;
    const failed = await post('/payments', key, { amount: 8, fail: 'throw' });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ handled: 'handler failed' });
    expect(errors.length).toBe(before + 1);
    expect(await payments(key)).toBe(0);
    // The same key, now with a request that succeeds: nothing was used up.
    expect((await post('/payments', key, { amount: 8, fail: 'throw-not' })).status).toBe(201);
    expect(await payments(key)).toBe(1);
  });

  it('refuses a body that no parser read, rather than fingerprinting without it', async () => {
    const key = uniqueKey();
    const response = await post('/unparsed', key, { amount: 9 });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ handled: expect.stringContaining('body parser') });
    expect(await payments(key)).toBe(0);
  });

  it('lets GET through untouched', async () => {
    const response = await fetch(`${baseUrl}/payments`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ listed: true });
  });

  it('makes a duplicate wait for the request in flight and replay it, or answers 409 with reject', async () => {
    for (const path of ['/payments', '/reject/payments']) {
      const key = uniqueKey();
      const inside = deferred();
      const release = deferred();
      hold = { inside: () => inside.resolve(), release: release.promise };
      const first = post(path, key, { amount: 10 });
      await inside.promise;
      hold = undefined;
      const duplicate = post(path, key, { amount: 10 });
      if (path === '/payments') await waitForLockWaiters(fx.db, 1);
      else {
        const conflict = await duplicate;
        expect(conflict.status).toBe(409);
        expect(Number(conflict.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(await conflict.json()).toMatchObject({
          type: 'urn:idempotency-ledger:problem:request-in-progress',
        });
      }
      release.resolve();
      const firstBody = await (await first).text();
      if (path === '/payments') {
        const replay = await duplicate;
        expect(replay.headers.get('idempotent-replayed')).toBe('true');
        expect(await replay.text()).toBe(firstBody);
      }
      expect(await payments(key)).toBe(1);
    }
  });

  it('sends a res.sendFile() response once committed; one the handler does not wait for, never', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'idempotency-sendfile-'));
    const file = join(dir, 'receipt.txt');
    writeFileSync(file, 'receipt\n');
    const app = express();
    const reported: unknown[] = [];
    const options = { db: fx.db, scope: () => 'files', onError: (e: unknown) => reported.push(e) };
    const handler = (wait: boolean) =>
      idempotent(options, async (_req, res, { trx, key }) => {
        await trx.insertInto('payments').values({ scope: 'files', key, amount: 1 }).execute();
        if (!wait) {
          // The usual call: sendFile streams the file after the handler returned.
          res.sendFile(file);
          return;
        }
        await new Promise<void>((resolve, reject) => {
          res.sendFile(file, (error?: Error) => (error ? reject(error) : resolve()));
        });
      });
    app.post('/awaited', handler(true));
    app.post('/not-awaited', handler(false));
    const server = await listen(app);
    const send = (path: string, key: string) =>
      fetch(`${server.baseUrl}${path}`, { method: 'POST', headers: { 'idempotency-key': key } });
    try {
      const key = uniqueKey();
      const first = await send('/awaited', key);
      expect(first.status).toBe(200);
      expect(await first.text()).toBe('receipt\n');
      const replay = await send('/awaited', key);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.text()).toBe('receipt\n');
      expect(await fx.countPayments(key)).toBe(1);

      const late = uniqueKey();
      const response = await send('/not-awaited', late);
      expect(response.status).toBe(500);
      expect(await response.json()).toMatchObject({
        type: 'urn:idempotency-ledger:problem:internal-error',
      });
      expect(await fx.countPayments(late)).toBe(0);
      expect(reported).toEqual([expect.objectContaining({ code: 'response_not_sent' })]);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true });
    }
  });

  it('never sends a response whose commit failed', async () => {
    const key = uniqueKey();
    const app = express();
    app.post(
      '/commit-fails',
      express.json(),
      idempotent({ db: fx.db, scope: () => 'commit' }, async (_req, res, { trx, key }) => {
        await trx.insertInto('payments').values({ scope: 'commit', key, amount: 1 }).execute();
        // Checked at COMMIT, after the handler produced its 201: the commit fails.
        await sql`insert into deferred_check values (1)`.execute(trx);
        res.status(201).json({ created: true });
      }),
    );
    app.use(
      (
        error: Error,
        _req: express5.Request,
        res: express5.Response,
        _next: express5.NextFunction,
      ) => {
        res.status(500).json({ failed: (error as { code?: string }).code });
      },
    );
    const server = await listen(app);
    try {
      const url = `${server.baseUrl}/commit-fails`;
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: '{}',
      });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ failed: '23505' });
      expect(await fx.countPayments(key)).toBe(0);
    } finally {
      await server.close();
    }
  });
});
