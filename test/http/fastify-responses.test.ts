/**
 * idempotency-ledger/fastify: how the response of each kind of handler is held until the commit,
 * stored and replayed (serialized by a schema, streamed, empty, a fetch Response, sent late...),
 * over real sockets and a real Postgres.
 */
import { describe, expect, it } from 'vitest';
import { UnstorableResponseError } from '../../src/index.ts';
import { uniqueKey } from '../support/ledger-fixture.ts';
import { bytesOf, problemOf, useFastifyApp } from './fastify-app.ts';

const { fx, post, libraryErrors } = useFastifyApp();

describe('what the plugin holds, stores and replays', () => {
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
});
