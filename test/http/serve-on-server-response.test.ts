import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { UnstorableResponseError } from '../../src/index.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import {
  insertPayment,
  MIDDLEWARE_HEADERS,
  type RouteHandler,
  startServer,
  type TestServer,
} from './support/node-server.ts';
import { type RawResponse, rawRequest } from './support/raw-http.ts';

const fx = useLedgerFixture();
const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(handler: RouteHandler, extra?: Parameters<typeof startServer>[2]) {
  const server = await startServer(fx.db, handler, extra);
  servers.push(server);
  const send = (key: string, body = '{"amount":100}') =>
    rawRequest(server.port, {
      headers: { 'idempotency-key': key, 'merchant-id': 'm1', 'content-type': 'application/json' },
      body,
    });
  return { server, send };
}

const sameBytes = (a: Buffer, b: Buffer) => Buffer.compare(a, b) === 0;
const names = (response: RawResponse) => response.headers.map(([name]) => name);

describe('serveOnServerResponse over a real socket', () => {
  it('sends writeHead(status, headers).end(body), then replays it byte for byte', async () => {
    const { send } = await serve(async (trx, res, context) => {
      const id = await insertPayment(trx, context);
      res
        .writeHead(201, {
          'content-type': 'application/json',
          location: `/payments/${id}`,
          'x-handler': 'yes',
        })
        .end(`{"id":"${id}","note":"café"}`);
    });
    const key = uniqueKey();
    const first = await send(key);
    const replay = await send(key);

    expect(first.status).toBe(201);
    expect(first.values('x-handler')).toEqual(['yes']);
    expect(first.values('idempotent-replayed')).toEqual([]);
    expect(replay.status).toBe(201);
    expect(sameBytes(replay.body, first.body)).toBe(true);
    expect(replay.values('idempotent-replayed')).toEqual(['true']);
    expect(replay.values('content-type')).toEqual(first.values('content-type'));
    expect(replay.values('location')).toEqual(first.values('location'));
    expect(replay.values('x-handler')).toEqual([]);
    // What the earlier middleware set is on both.
    for (const [name, value] of Object.entries(MIDDLEWARE_HEADERS)) {
      expect(first.values(name)).toEqual([value]);
      expect(replay.values(name)).toEqual([value]);
    }
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('buffers res.write chunks and end, in any encoding, and calls their callbacks', async () => {
    const callbacks: string[] = [];
    const { send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      res.setHeader('content-type', 'application/octet-stream');
      res.write('head;', () => callbacks.push('write'));
      res.write('c3a9', 'hex');
      res.write(Buffer.from([0x00, 0xff]));
      res.write(new Uint8Array([0x41]), 'utf8', () => callbacks.push('write with encoding'));
      res.end('tail', () => callbacks.push('end'));
    });
    const key = uniqueKey();
    const expected = Buffer.concat([
      Buffer.from('head;'),
      Buffer.from([0xc3, 0xa9, 0x00, 0xff, 0x41]),
      Buffer.from('tail'),
    ]);
    const first = await send(key);
    const replay = await send(key);
    expect(sameBytes(first.body, expected)).toBe(true);
    expect(sameBytes(replay.body, expected)).toBe(true);
    expect(replay.values('content-type')).toEqual(['application/octet-stream']);
    expect(callbacks.sort()).toEqual(['end', 'write', 'write with encoding']);
  });

  it('keeps nothing written after end, as Node would not send it', async () => {
    const { send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      res.end('once');
      res.end('twice');
      res.write('thrice', () => {});
    });
    const key = uniqueKey();
    expect((await send(key)).body.toString()).toBe('once');
    expect((await send(key)).body.toString()).toBe('once');
  });

  it('sends the status message given to writeHead; a replay has the status', async () => {
    const { send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      res.writeHead(201, 'Payment Accepted', { 'content-type': 'text/plain' }).end('ok');
    });
    const key = uniqueKey();
    const first = await send(key);
    expect(`${first.status} ${first.statusMessage}`).toBe('201 Payment Accepted');
    const replay = await send(key);
    expect(replay.status).toBe(201);
    expect(replay.body.toString()).toBe('ok');
  });

  it("keeps writeHead's flat array form as Node does: repeated names repeated", async () => {
    const { send } = await serve(
      async (trx, res, context) => {
        await insertPayment(trx, context);
        res
          .writeHead(200, [
            'content-type',
            'text/plain',
            'x-multi',
            'a',
            'x-multi',
            'b',
            'cache-control',
            'private',
          ])
          .end('flat');
      },
      { storedHeaders: ['content-type', 'x-multi'] },
    );
    const key = uniqueKey();
    const first = await send(key);
    expect(first.values('x-multi')).toEqual(['a', 'b']);
    // A header the array names replaces the earlier middleware's value.
    expect(first.values('cache-control')).toEqual(['private']);
    const replay = await send(key);
    expect(replay.values('x-multi')).toEqual(['a', 'b']);
    expect(replay.body.toString()).toBe('flat');
  });

  it('captures a Readable piped into res, with pipe() or with pipeline()', async () => {
    const chunks = ['{"items":[', '1,', '2', ']}'];
    const { server, send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      res.setHeader('content-type', 'application/json');
      if (context.body.includes('pipeline')) {
        await pipeline(Readable.from(chunks), res);
      } else {
        const source = Readable.from(chunks);
        source.pipe(res);
        await new Promise((resolve) => source.on('end', resolve));
      }
    });
    for (const how of ['pipe', 'pipeline']) {
      const key = uniqueKey(how);
      const first = await send(key, `{"how":"${how}"}`);
      const replay = await send(key, `{"how":"${how}"}`);
      expect(first.status).toBe(200);
      expect(first.body.toString()).toBe(chunks.join(''));
      expect(sameBytes(replay.body, first.body)).toBe(true);
      expect(replay.values('idempotent-replayed')).toEqual(['true']);
      expect(await fx.countPayments(key)).toBe(1);
    }
    // The middleware's own 'finish' listener heard each response once, when it was sent.
    expect(server.finished).toEqual([200, 200, 200, 200]);
  });

  it('answers a body over maxResponseBytes with a 500 problem and commits nothing', async () => {
    const { server, send } = await serve(
      async (trx, res, context) => {
        await insertPayment(trx, context);
        res.writeHead(201, 'Payment Accepted', { 'x-handler': 'yes' });
        res.write('x'.repeat(600));
        res.end('y'.repeat(600));
      },
      { maxResponseBytes: 1000 },
    );
    const key = uniqueKey();
    const response = await send(key);
    expect(`${response.status} ${response.statusMessage}`).toBe('500 Internal Server Error');
    expect(response.values('content-type')).toEqual(['application/problem+json']);
    expect(JSON.parse(response.body.toString()).type).toBe(
      'urn:idempotency-ledger:problem:response-not-storable',
    );
    expect(response.values('x-handler')).toEqual([]);
    expect(response.body.toString()).not.toContain('xxx');
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
    expect(server.reported).toHaveLength(1);
    expect(server.reported[0]).toBeInstanceOf(UnstorableResponseError);
    expect(server.finished).toEqual([500]);
  });

  it('never sends what the handler writes after it returned: a 500 problem, nothing committed', async () => {
    // As res.sendFile() or an un-awaited pipe do: the response ends after the handler returned,
    // here while the transaction rolls back (the pool gets its client back), before the answer.
    const { server, send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      fx.pool.once('release', () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-handler': 'late' }).end('late');
      });
    });
    const key = uniqueKey();
    const response = await send(key);

    expect(response.status).toBe(500);
    expect(JSON.parse(response.body.toString()).type).toBe(
      'urn:idempotency-ledger:problem:internal-error',
    );
    expect(names(response)).not.toContain('x-handler');
    expect(await fx.countPayments(key)).toBe(0);
    expect(server.errors).toEqual([]);
    expect(server.finished).toEqual([500]);
  });

  it('sends nothing when the handler throws after ending: res restored, error rethrown', async () => {
    const failure = new Error('audit log unavailable');
    const { server, send } = await serve(async (trx, res, context) => {
      await insertPayment(trx, context);
      res.writeHead(201, 'Payment Accepted', { 'x-handler': 'yes' }).end('never sent');
      throw failure;
    });
    const key = uniqueKey();
    const response = await send(key);

    expect(server.errors).toHaveLength(1);
    const seen = server.errors[0];
    expect(seen?.error).toBe(failure);
    expect(seen?.headersSent).toBe(false);
    expect(seen?.headers).toEqual(MIDDLEWARE_HEADERS);
    expect(seen?.statusCode).toBe(200);
    expect(`${response.status} ${response.statusMessage}`).toBe('200 OK');
    expect(response.body.toString()).toBe('handled by the error handler');
    expect(names(response)).not.toContain('x-handler');
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });
});
