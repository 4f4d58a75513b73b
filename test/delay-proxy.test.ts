/**
 * The benchmark's TCP delay proxy (benchmarks/rtt-proxy/): it must forward every byte intact and
 * in order both ways, delay each chunk by at least its configured time in each direction, and
 * close the client's side when the target's side ends. Only lower bounds on time are asserted:
 * a busy machine can always make things slower.
 *
 * The proxy is built with gcc. Without gcc these tests skip with a printed notice, except under
 * CI, where a missing gcc fails them: CI must not lose that coverage silently.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  buildDelayProxy,
  type DelayProxy,
  delayProxyUnavailable,
  startDelayProxy,
} from '../benchmarks/rtt-proxy/start-delay-proxy.ts';

const unavailable = delayProxyUnavailable();
if (unavailable) {
  const notice = `${unavailable}: the delay proxy cannot be built`;
  if (process.env.CI) throw new Error(`${notice}; its tests cannot run`);
  console.warn(`${notice}: skipping its tests`);
}

/** One way; an echo's round trip through the proxy takes at least twice this. */
const DELAY_MS = 15;

/** A server that sends back whatever it receives. */
async function startEchoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.pipe(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function connectTo(port: number): Promise<Socket> {
  const socket = new Socket();
  socket.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/** Reads from `socket` until `length` bytes have arrived, noting when each chunk came. */
function readBytes(socket: Socket, length: number) {
  return new Promise<{ data: Buffer; arrivals: { at: number; end: number }[] }>(
    (resolve, reject) => {
      const chunks: Buffer[] = [];
      const arrivals: { at: number; end: number }[] = [];
      let received = 0;
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        arrivals.push({ at: performance.now(), end: received });
        if (received >= length) {
          socket.off('data', onData);
          resolve({ data: Buffer.concat(chunks), arrivals });
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.once('close', () => reject(new Error(`closed after ${received} of ${length} bytes`)));
    },
  );
}

describe.skipIf(unavailable !== undefined)('the delay proxy', () => {
  let echo: { server: Server; port: number };
  const proxies: DelayProxy[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    await buildDelayProxy();
    echo = await startEchoServer();
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all(proxies.map((proxy) => proxy.stop()));
    echo?.server.close();
  });

  async function proxyTo(
    targetPort: number,
    oneWayDelayUs: number,
    targetHost = '127.0.0.1',
  ): Promise<DelayProxy> {
    const proxy = await startDelayProxy({ targetHost, targetPort, oneWayDelayUs });
    proxies.push(proxy);
    return proxy;
  }

  async function client(port: number): Promise<Socket> {
    const socket = await connectTo(port);
    sockets.push(socket);
    return socket;
  }

  it('forwards 4 MiB intact both ways', async () => {
    const proxy = await proxyTo(echo.port, 1000);
    const socket = await client(proxy.port);
    const sent = randomBytes(4 * 2 ** 20);
    const reading = readBytes(socket, sent.length);
    // Several writes, so that the proxy queues many chunks in each direction.
    for (let offset = 0; offset < sent.length; offset += 300_000) {
      socket.write(sent.subarray(offset, offset + 300_000));
    }
    const { data } = await reading;
    expect(data.equals(sent)).toBe(true);
  });

  it('keeps pipelined messages in order, each delayed at least the configured time each way', async () => {
    const proxy = await proxyTo(echo.port, DELAY_MS * 1000);
    const socket = await client(proxy.port);
    const messages = Array.from({ length: 40 }, (_, i) => Buffer.from(`message ${i};`));
    const total = messages.reduce((sum, message) => sum + message.length, 0);
    const reading = readBytes(socket, total);
    // Sent without waiting for answers, a few milliseconds apart: each gets its own chunk.
    const sentAt: { at: number; end: number }[] = [];
    let end = 0;
    for (const message of messages) {
      end += message.length;
      sentAt.push({ at: performance.now(), end });
      socket.write(message);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const { data, arrivals } = await reading;
    expect(data.toString()).toBe(Buffer.concat(messages).toString());
    // The last byte of each chunk that arrived left in a known write: it crossed the proxy twice
    // (to the echo server and back), each time at least one delay after the proxy read it.
    for (const arrival of arrivals) {
      const write = sentAt.find((candidate) => candidate.end >= arrival.end);
      expect(write).toBeDefined();
      expect(arrival.at - (write?.at ?? Number.NaN)).toBeGreaterThanOrEqual(2 * DELAY_MS);
    }
  });

  it('carries a PostgreSQL session: queries and their results as without it', async () => {
    const admin = new URL(inject('adminDatabaseUrl'));
    const proxy = await proxyTo(Number(admin.port || 5432), 200, admin.hostname);
    const url = new URL(admin);
    url.hostname = proxy.host;
    url.port = String(proxy.port);
    const direct = new pg.Client({ connectionString: admin.toString() });
    // pg's pipeline mode sends queries without waiting for answers: back to back on the wire.
    const proxied = new pg.Client({
      connectionString: url.toString(),
      pipeline: true,
    } as pg.ClientConfig);
    await Promise.all([direct.connect(), proxied.connect()]);
    try {
      const query =
        "select g, md5(g::text) as h, repeat('x', 50000) as big from generate_series(1, 200) g";
      // Ten queries at once on one connection, pipelined.
      const [expected, ...results] = await Promise.all([
        direct.query(query),
        ...Array.from({ length: 10 }, () => proxied.query(query)),
      ]);
      for (const result of results) expect(result.rows).toEqual(expected?.rows);
    } finally {
      await Promise.all([direct.end(), proxied.end()]);
    }
  });

  it("closes the client's side once the target has closed and its bytes are delivered", async () => {
    const server = createServer((socket) => socket.end('goodbye'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const proxy = await proxyTo((server.address() as AddressInfo).port, 5000);
      const socket = await client(proxy.port);
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(socket, 'end');
      expect(Buffer.concat(chunks).toString()).toBe('goodbye');
    } finally {
      server.close();
    }
  });

  it('closes the client when nothing listens at the target', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const proxy = await proxyTo(port, 0);
    const socket = await client(proxy.port);
    socket.on('error', () => undefined); // a reset is as good as an end here
    socket.resume();
    await once(socket, 'close');
    expect(socket.bytesRead).toBe(0);
  });
});
