import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandlerNotRepeatableError, idempotency } from '../../src/hono/index.ts';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { waitForLockWaiters } from '../support/barrier.ts';
import { countCheckedOutClients } from '../support/database.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import {
  addCommitTimeChecks,
  SERIALIZATION_FAILURE_AMOUNT,
  startTestApp,
  type TestApp,
} from './support/hono-test-app.ts';

const fx = useLedgerFixture();
let app: TestApp;

beforeAll(async () => {
  await addCommitTimeChecks(fx.db);
  app = await startTestApp(fx.db);
});
afterAll(async () => {
  await app?.close();
});

interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  text: string;
}

interface PostOptions {
  /** The Idempotency-Key header's value, as sent; none when undefined. */
  key?: string | undefined;
  merchant?: string;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

async function post(path: string, options: PostOptions = {}): Promise<Reply> {
  const { key, merchant = 'merchant-1', body = { amount: 100 } } = options;
  const headers: Record<string, string> = {
    'content-type': options.contentType ?? 'application/json',
    'merchant-id': merchant,
  };
  if (key !== undefined) headers['idempotency-key'] = key;
  const response = await fetch(`${app.url}${path}`, {
    method: 'POST',
    headers,
    body: body instanceof Uint8Array ? body : JSON.stringify(body),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    headers: response.headers,
    body: bytes,
    text: bytes.toString(),
  };
}

/** A POST with the Idempotency-Key header sent once per value (fetch would join them). */
function postWithKeyHeaders(path: string, keys: string[], merchant = 'merchant-1') {
  return new Promise<{ status: number; contentType: string | undefined; text: string }>(
    (resolve, reject) => {
      const req = httpRequest(`${app.url}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'merchant-id': merchant,
          'idempotency-key': keys,
        },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            text: Buffer.concat(chunks).toString(),
          }),
        );
      });
      req.end(JSON.stringify({ amount: 100 }));
    },
  );
}

function expectProblem(reply: { status: number; text: string }, status: number, slug: string) {
  expect(reply.status, reply.text).toBe(status);
  expect(JSON.parse(reply.text)).toMatchObject({
    type: `urn:idempotency-ledger:problem:${slug}`,
    status,
  });
}

/** The replay is the first response again: status, stored headers and body bytes. */
function expectReplayOf(replay: Reply, first: Reply) {
  expect(replay.status).toBe(first.status);
  expect(replay.headers.get('content-type')).toBe(first.headers.get('content-type'));
  expect(replay.headers.get('location')).toBe(first.headers.get('location'));
  expect(replay.body.equals(first.body), `${replay.text} vs ${first.text}`).toBe(true);
  expect(replay.headers.get('idempotent-replayed')).toBe('true');
  expect(first.headers.get('idempotent-replayed')).toBeNull();
}

describe('idempotency() on a Hono route', () => {
  it('executes once: 201 with Location, then replays it byte for byte', async () => {
    const key = uniqueKey();
    const first = await post('/payments', { key, body: { amount: 250 } });
    expect(first.status, first.text).toBe(201);
    const { id } = JSON.parse(first.text) as { id: string };
    expect(first.headers.get('location')).toBe(`/payments/${id}`);
    expect(first.headers.get('content-type')).toBe('application/json');

    const replay = await post('/payments', { key, body: { amount: 250 } });
    expectReplayOf(replay, first);
    // Headers set by middleware before idempotency() are on the replay too.
    expect(replay.headers.get('x-served-by')).toBe('test-app');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('reads a bare key and the same key as a quoted string as one key', async () => {
    const key = uniqueKey();
    const first = await post('/payments', { key });
    const quoted = await post('/payments', { key: `"${key}"` });
    expect(first.status).toBe(201);
    expectReplayOf(quoted, first);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('answers a key sent in two headers with a 400 problem, and writes nothing', async () => {
    const [a, b] = [uniqueKey('a'), uniqueKey('b')];
    const reply = await postWithKeyHeaders('/payments', [a, b]);
    expectProblem(reply, 400, 'invalid-key');
    expect(reply.contentType).toBe('application/problem+json');
    expect((await fx.countPayments(a)) + (await fx.countPayments(b))).toBe(0);
  });

  it('answers a missing key with a 400 missing-key problem', async () => {
    const reply = await post('/payments', { key: undefined });
    expectProblem(reply, 400, 'missing-key');
    expect(reply.headers.get('content-type')).toBe('application/problem+json');
  });

  it('answers the key reused with another body with 422, and keeps the first payment', async () => {
    const key = uniqueKey();
    expect((await post('/payments', { key, body: { amount: 1, memo: 'rent' } })).status).toBe(201);
    // The same JSON with its members in another order is the same request.
    const reordered = await post('/payments', { key, body: { memo: 'rent', amount: 1 } });
    expect(reordered.headers.get('idempotent-replayed')).toBe('true');
    expectProblem(await post('/payments', { key, body: { amount: 2 } }), 422, 'key-reused');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("scopes keys per merchant: another merchant's same key is another payment", async () => {
    const key = uniqueKey();
    const one = await post('/payments', { key, merchant: 'merchant-1' });
    const other = await post('/payments', { key, merchant: 'merchant-2' });
    expect([one.status, other.status]).toEqual([201, 201]);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.text).not.toBe(one.text);
    expect(await fx.countPayments(key)).toBe(2);
  });

  it("makes a duplicate wait for the first request's transaction, then replays it", async () => {
    const key = uniqueKey();
    const gate = app.holdNext(key);
    const first = post('/payments', { key });
    await gate.inside;
    const duplicate = post('/payments', { key });
    await waitForLockWaiters(fx.db, 1);
    gate.release();
    const [a, b] = await Promise.all([first, duplicate]);
    expect(a.status, a.text).toBe(201);
    expectReplayOf(b, a);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("answers a duplicate in flight with 409 and Retry-After when onConcurrent is 'reject'", async () => {
    const key = uniqueKey();
    const gate = app.holdNext(key);
    const first = post('/payments-reject', { key });
    await gate.inside;
    const duplicate = await post('/payments-reject', { key });
    expectProblem(duplicate, 409, 'request-in-progress');
    expect(Number(duplicate.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    gate.release();
    const a = await first;
    expect(a.status, a.text).toBe(201);
    expectReplayOf(await post('/payments-reject', { key }), a);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('sends a 5xx the handler returns without storing it; the retry executes', async () => {
    const key = uniqueKey();
    const unavailable = await post('/unavailable-once', { key });
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get('retry-after')).toBe('1');
    expect(JSON.parse(unavailable.text)).toEqual({ error: 'try again' });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await post('/unavailable-once', { key });
    expect(retry.status, retry.text).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("rolls back a handler that throws and sends app.onError's response, not stored", async () => {
    const key = uniqueKey();
    const failed = await post('/throws-once', { key });
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.text)).toEqual({
      handledBy: 'app.onError',
      message: 'the handler failed',
    });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await post('/throws-once', { key });
    expect(retry.status, retry.text).toBe(201);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('rolls back a handler that throws an HTTPException: its 4xx is sent, not stored', async () => {
    const key = uniqueKey();
    for (const attempt of [1, 2]) {
      const refused = await post('/refuses-after-writing', { key });
      expect(refused.status, `attempt ${attempt}`).toBe(409);
      expect(refused.text).toBe('refused by the handler');
      expect(refused.headers.get('idempotent-replayed')).toBeNull();
    }
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('never shows a failed commit to the client as a success', async () => {
    const key = uniqueKey();
    const reply = await post('/commit-fails', { key });
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.text)).toMatchObject({ handledBy: 'app.onError' });
    // The handler's headers are not on the error response; the outer middleware's are.
    expect(reply.headers.get('location')).toBeNull();
    expect(reply.headers.get('x-served-by')).toBe('test-app');
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('answers 500 when the transaction must be retried after the handler ran', async () => {
    const key = uniqueKey();
    const before = app.libraryErrors.length;
    const reply = await post('/payments', { key, body: { amount: SERIALIZATION_FAILURE_AMOUNT } });
    expectProblem(reply, 500, 'internal-error');
    expect(reply.headers.get('location')).toBeNull();
    expect(app.libraryErrors.slice(before).map((error) => error.constructor)).toEqual([
      HandlerNotRepeatableError,
    ]);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('answers a handler that returns no response with a 500 problem, and commits nothing', async () => {
    const key = uniqueKey();
    const before = app.libraryErrors.length;
    for (const attempt of [1, 2]) {
      const reply = await post('/returns-nothing', { key });
      expectProblem(reply, 500, 'internal-error');
      expect(reply.headers.get('idempotent-replayed'), `attempt ${attempt}`).toBeNull();
    }
    expect(app.libraryErrors.slice(before).map((error) => error.code)).toEqual([
      'response_not_sent',
      'response_not_sent',
    ]);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('leaves GET untouched: no key needed, no variable set', async () => {
    const response = await fetch(`${app.url}/things/42`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ id: '42', variableSet: false });
  });

  it('buffers a streamed response, commits it, and replays it byte for byte', async () => {
    const key = uniqueKey();
    const first = await post('/stream', { key });
    expect(first.status).toBe(201);
    expect(first.text).toBe('first chunk; second chunk, ünïcödé third');
    expectReplayOf(await post('/stream', { key }), first);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('replays a binary body byte for byte, and fingerprints a binary request by its bytes', async () => {
    const key = uniqueKey();
    const request = new Uint8Array([0x80, 0x81, 0xff, 0x00, 0x41]);
    const options = { key, body: request, contentType: 'application/octet-stream' };
    const first = await post('/binary', options);
    expect(first.status).toBe(201);
    expect([...first.body]).toEqual([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x41, 0x00, 0xff, 0x81, 0x80]);
    expectReplayOf(await post('/binary', options), first);
    const otherBytes = { ...options, body: new Uint8Array([0x80, 0x81, 0xff, 0x00, 0x42]) };
    expectProblem(await post('/binary', otherBytes), 422, 'key-reused');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('stops buffering a response at maxResponseBytes: a 500 problem, nothing committed', async () => {
    const key = uniqueKey();
    const reply = await post('/large', { key });
    expectProblem(reply, 500, 'response-not-storable');
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('leaves the body to the handler: c.req.raw, and validators before or after it', async () => {
    for (const path of ['/raw', '/validated-before', '/validated-after']) {
      const key = uniqueKey();
      const first = await post(path, { key, body: { amount: 7 } });
      expect(first.status, `${path}: ${first.text}`).toBe(201);
      expect(JSON.parse(first.text)).toMatchObject({ amount: 7 });
      expectReplayOf(await post(path, { key, body: { amount: 7 } }), first);
      expectProblem(await post(path, { key, body: { amount: 8 } }), 422, 'key-reused');
      expect(await fx.countPayments(key)).toBe(1);
    }
  });

  it('answers a body the validator before it refuses with 400, without using up the key', async () => {
    const key = uniqueKey();
    const refused = await post('/validated-before', { key, body: { amount: -1 } });
    expect(refused.status).toBe(400);
    const accepted = await post('/validated-before', { key, body: { amount: 5 } });
    expect(accepted.status, accepted.text).toBe(201);
    expect(accepted.headers.get('idempotent-replayed')).toBeNull();
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('commits the payment of a client that disconnected, and replays it to its retry', async () => {
    const key = uniqueKey();
    const gate = app.holdNext(key);
    const abort = new AbortController();
    const first = post('/payments', { key, signal: abort.signal });
    await gate.inside;
    abort.abort();
    await expect(first).rejects.toThrow();
    gate.release();
    await expect
      .poll(() => fx.countPayments(key), { timeout: 30_000, message: 'the payment to commit' })
      .toBe(1);
    await expect
      .poll(() => countCheckedOutClients(fx.pool), {
        timeout: 30_000,
        message: 'the request to give its client back',
      })
      .toBe(0);
    const retry = await post('/payments', { key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('never puts the key or the scope in a problem', async () => {
    const key = uniqueKey('SECRET-KEY');
    const merchant = 'SECRET-MERCHANT';
    const replies = [
      await post('/payments', { key: undefined, merchant }),
      await post('/payments', { key: `${key}${'x'.repeat(255)}`, merchant }),
      await postWithKeyHeaders('/payments', [key, `${key}-2`], merchant),
      await post('/large', { key: `${key}-large`, merchant }),
      await post('/payments', {
        key: `${key}-retry`,
        merchant,
        body: { amount: SERIALIZATION_FAILURE_AMOUNT },
      }),
    ];
    expect((await post('/payments', { key, merchant, body: { amount: 1 } })).status).toBe(201);
    replies.push(await post('/payments', { key, merchant, body: { amount: 2 } }));
    const gate = app.holdNext(`${key}-held`);
    const held = post('/payments-reject', { key: `${key}-held`, merchant });
    await gate.inside;
    replies.push(await post('/payments-reject', { key: `${key}-held`, merchant }));
    gate.release();
    expect((await held).status).toBe(201);

    expect(replies.map((reply) => reply.status)).toEqual([400, 400, 400, 500, 500, 422, 409]);
    for (const reply of replies) {
      expect(reply.text).not.toContain('SECRET');
      expect(JSON.parse(reply.text)).toHaveProperty('type');
    }
  });

  it('checks its options when the route is set up', () => {
    expect(() => idempotency({ db: fx.db, scope: 'merchant' as never })).toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(() => idempotency({ db: fx.db, scope: () => 's', maxResponseBytes: -1 })).toThrow(
      /maxResponseBytes/,
    );
  });
});
