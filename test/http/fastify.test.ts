/**
 * idempotency-ledger/fastify, the contract: a real Fastify 5 app over real sockets and a real
 * Postgres; each test counts the business rows its requests wrote, and compares replays byte for
 * byte. How each kind of response is held and stored: fastify-responses.test.ts.
 */
import { request as httpRequest } from 'node:http';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../../src/fastify/index.ts';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { waitForLockWaiters } from '../support/barrier.ts';
import { countCheckedOutClients } from '../support/database.ts';
import { uniqueKey } from '../support/ledger-fixture.ts';
import { bytesOf, MERCHANT, problemOf, useFastifyApp } from './fastify-app.ts';

const { fx, post, holdNextRequest, handlerErrors, url } = useFastifyApp();

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
        const outgoing = httpRequest(url('/payments'), {
          method: 'POST',
          // Two header lines, as a client or a proxy may send them (raw form: no Host added).
          headers: [
            'host',
            new URL(url('/')).host,
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
    const held = holdNextRequest();
    const first = post('/payments', key);
    await held.inside;
    const duplicate = post('/payments', key);
    await waitForLockWaiters(fx.db, 1);
    held.release();
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
    const held = holdNextRequest();
    const first = post('/reject/payments', key);
    await held.inside;
    const conflict = await post('/reject/payments', key);
    held.release();
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

  it('commits the work of a client that went away, and replays it to its retry', async () => {
    const key = uniqueKey();
    const held = holdNextRequest();
    const controller = new AbortController();
    const abandoned = post('/payments', key, { amount: 1 }, { signal: controller.signal });
    await held.inside;
    controller.abort();
    await expect(abandoned).rejects.toThrow();
    held.release();
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

  it('applies to the routes of an encapsulated plugin', async () => {
    const key = uniqueKey();
    expect((await post('/v2/payments', key)).status).toBe(201);
    const again = await post('/v2/payments', key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses to read request.idempotency on a route without the config', async () => {
    const response = await fetch(url('/outside'));
    expect(await response.json()).toEqual({
      refused: expect.stringContaining('config.idempotency'),
    });
  });

  it('leaves a GET route untouched, key or not', async () => {
    const response = await fetch(url('/payments'), { headers: { 'idempotency-key': 'k' } });
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
