/**
 * A TCP proxy on 127.0.0.1 to a broker, whose connections a test can sever at once: what a
 * network failure or a broker restart does to a client. It keeps listening, so clients can
 * connect again.
 */
import { once } from 'node:events';
import net from 'node:net';

export interface TcpProxy {
  /** 127.0.0.1:<port> of the proxy. */
  port: number;
  /** Destroys every connection through the proxy; returns how many there were. */
  sever(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream).pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sever = () => {
    const count = pairs.size;
    for (const [client, upstream] of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    return count;
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    sever,
    async close() {
      sever();
      server.close();
      await once(server, 'close');
    },
  };
}
