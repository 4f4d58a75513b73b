/**
 * A TCP proxy in front of a broker, for tests of dropped connections: `sever()` destroys every
 * connection through it at once (the broker sees its client vanish, the client sees a reset),
 * and `swallowUpstream()` makes it drop what clients send from then on (an acknowledgement sent
 * after that never reaches the broker) until the next `sever()`. New connections are accepted
 * and forwarded as before, so a client that reconnects gets through.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export interface SeverableProxy {
  /** The port clients connect to, on 127.0.0.1. */
  port: number;
  /** How many connections were severed so far. */
  severed: number;
  /** How many connections are open through it now. */
  readonly connections: number;
  /** Resets every connection through it; returns how many there were. */
  sever(): number;
  swallowUpstream(): void;
  close(): Promise<void>;
}

export async function startSeverableProxy(target: { host: string; port: number }) {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let swallowing = false;
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(target.port, target.host);
    const pair = { client, upstream };
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (!swallowing) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const proxy: SeverableProxy = {
    port: address.port,
    severed: 0,
    get connections() {
      return pairs.size;
    },
    sever() {
      const count = pairs.size;
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
        proxy.severed++;
      }
      pairs.clear();
      swallowing = false;
      return count;
    },
    swallowUpstream() {
      swallowing = true;
    },
    async close() {
      proxy.sever();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
