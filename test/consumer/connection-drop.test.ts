/**
 * Broker connections dropped under the consumer adapters, through a proxy that resets them (the
 * broker sees its client vanish, as when a network path or a load balancer fails): messages
 * whose acknowledgement was lost are delivered again, to a consumer that reconnected, and are
 * replayed rather than processed twice. Counted in the business table.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, type ConsumerMessages, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats, type NatsConnection, nanos } from '@nats-io/transport-node';
import { type ChannelModel, connect as connectAmqp } from 'amqplib';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotentAmqpHandler } from '../../src/consumer/amqplib/index.ts';
import type { ConsumeResult } from '../../src/consumer/index.ts';
import { idempotentJetStreamHandler } from '../../src/consumer/nats/index.ts';
import { AMQP_URL, NATS_URL, openAmqp, openNats, uniqueName } from '../support/brokers.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type SeverableProxy, startSeverableProxy } from '../support/severable-proxy.ts';

const fx = useLedgerFixture();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Business rows of `scope`, and how many distinct keys they are for. */
async function payments(scope: string) {
  const { rows } = await sql<{ rows: number; keys: number }>`
    select count(*)::int as rows, count(distinct key)::int as keys
      from payments where scope = ${scope}`.execute(fx.db);
  return rows[0];
}

async function proxyTo(url: string): Promise<SeverableProxy> {
  const { hostname, port } = new URL(url);
  const proxy = await startSeverableProxy({ host: hostname, port: Number(port) });
  cleanups.push(() => proxy.close());
  return proxy;
}

/**
 * The deliveries a consumer handles concurrently: what became of them, and a way to wait for
 * those still in flight before the test's database goes away.
 */
class Handled {
  readonly results: ConsumeResult<unknown>[] = [];
  readonly #inFlight = new Set<Promise<unknown>>();

  track(handling: Promise<ConsumeResult<unknown>>) {
    const tracked = handling.then(
      (result) => {
        this.results.push(result);
      },
      // A delivery whose acknowledgement failed with its channel: it is delivered again.
      () => undefined,
    );
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
  }

  async settled() {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }
}

/**
 * Severs the consumer's connections `times` times, 150 ms apart, each time once it has
 * reconnected, while messages are in flight.
 */
async function dropRepeatedly(
  proxy: SeverableProxy,
  consumer: { connected: () => boolean },
  times: number,
) {
  for (let drop = 0; drop < times; drop++) {
    await sleep(150);
    await expect.poll(consumer.connected, { timeout: 15_000 }).toBe(true);
    proxy.sever();
  }
}

describe('RabbitMQ (amqplib)', () => {
  /**
   * A consumer that reconnects whenever its connection closes, as a service would; every
   * connection goes through the proxy.
   */
  async function startConsumer(
    proxy: SeverableProxy,
    queue: string,
    handler: (key: string) => Promise<void>,
  ) {
    const handled = new Handled();
    let running = true;
    let connected = false;
    let connection: ChannelModel | undefined;
    const proxied = new URL(AMQP_URL);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const open = async (): Promise<void> => {
      while (running) {
        try {
          connection = await connectAmqp(proxied.href);
          break;
        } catch {
          await sleep(50);
        }
      }
      if (!connection) return;
      const current = connection;
      current.on('error', () => undefined);
      current.on('close', () => {
        connected = false;
        if (running) setTimeout(() => open().catch(() => undefined), 50);
      });
      // A drop while the channel is being set up closes the connection too: the reconnect above
      // takes over.
      const channel = await current.createChannel();
      channel.on('error', () => undefined);
      const handle = idempotentAmqpHandler(fx.db, channel, {
        scope: queue,
        retryDelayMs: () => 10,
        onDeadLetter: () => undefined,
        handler: async (trx, message) => {
          const key = String(message.properties.messageId);
          await handler(key);
          return createPayment(queue, key)(trx);
        },
      });
      await channel.prefetch(20);
      await channel.consume(queue, (message) => {
        if (message) handled.track(handle(message));
      });
      connected = true;
    };
    await open();
    cleanups.push(async () => {
      running = false;
      await connection?.close();
      await handled.settled();
    });
    return { results: handled.results, connected: () => connected };
  }

  async function newQueue(admin: ChannelModel) {
    const channel = await admin.createChannel();
    const queue = uniqueName('drop');
    await channel.assertQueue(queue);
    cleanups.push(async () => {
      await channel.deleteQueue(queue);
      await admin.close();
    });
    return { channel, queue };
  }

  it('replays a message whose acknowledgement was lost with the connection, after reconnecting', async () => {
    const proxy = await proxyTo(AMQP_URL);
    const { channel, queue } = await newQueue(await openAmqp());
    const id = uniqueKey('msg');
    channel.sendToQueue(queue, Buffer.from('{}'), { messageId: id });
    const ran: string[] = [];
    const { results } = await startConsumer(proxy, queue, async (key) => {
      ran.push(key);
      // From here on nothing this consumer sends reaches the broker: the acknowledgement sent
      // after the commit is lost.
      proxy.swallowUpstream();
    });
    await expect.poll(() => results.length, { timeout: 10_000 }).toBe(1);
    proxy.sever();
    await expect.poll(() => results.length, { timeout: 15_000 }).toBe(2);
    expect(results.map((result) => result.outcome)).toEqual(['processed', 'replayed']);
    expect(results[1]).toEqual({
      outcome: 'replayed',
      response: (results[0] as { response: unknown }).response,
    });
    expect(ran).toEqual([id]);
    expect(await fx.countPayments(id, queue)).toBe(1);
    await expect
      .poll(async () => (await channel.checkQueue(queue)).messageCount, { timeout: 5000 })
      .toBe(0);
  });

  it('gives 300 messages their effect once while the connection is dropped again and again', async () => {
    const proxy = await proxyTo(AMQP_URL);
    const { channel, queue } = await newQueue(await openAmqp());
    const total = 300;
    for (let i = 0; i < total; i++) {
      channel.sendToQueue(queue, Buffer.from('{}'), { messageId: `m-${i}-${uniqueKey()}` });
    }
    // Each handler takes a little while, so that drops find transactions in flight.
    const consumer = await startConsumer(proxy, queue, () => sleep(5));
    await dropRepeatedly(proxy, consumer, 6);
    await expect.poll(async () => (await payments(queue))?.keys, { timeout: 30_000 }).toBe(total);
    await expect
      .poll(async () => (await channel.checkQueue(queue)).messageCount, { timeout: 15_000 })
      .toBe(0);
    expect(await payments(queue)).toEqual({ rows: total, keys: total });
    expect(proxy.severed).toBeGreaterThanOrEqual(6);
    expect(
      consumer.results.filter((result) => result.outcome === 'processed').length,
    ).toBeLessThanOrEqual(total);
  });
});

describe('NATS JetStream', () => {
  async function newStream(nc: NatsConnection) {
    const jsm = await jetstreamManager(nc);
    const stream = uniqueName('drop');
    await jsm.streams.add({ name: stream, subjects: [stream] });
    await jsm.consumers.add(stream, {
      durable_name: 'worker',
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(1000),
      max_deliver: -1,
    });
    cleanups.push(async () => {
      await jsm.streams.delete(stream);
      await nc.close();
    });
    return stream;
  }

  /** A pull consumer on a connection through the proxy, which the client reconnects by itself. */
  async function startConsumer(
    proxy: SeverableProxy,
    stream: string,
    handler: (key: string) => Promise<void>,
  ) {
    const nc = await connectNats({
      servers: `127.0.0.1:${proxy.port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 50,
    });
    // Connected once the client says it reconnected, not when the proxy accepts a connection:
    // a drop in the middle of the client's handshake is not a drop of a working consumer.
    let connected = true;
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') connected = false;
        if (status.type === 'reconnect') connected = true;
      }
    })();
    const handled = new Handled();
    const handle = idempotentJetStreamHandler(fx.db, {
      scope: stream,
      retryDelayMs: () => 10,
      onDeadLetter: () => undefined,
      handler: async (trx, message) => {
        const key = message.headers?.get('Nats-Msg-Id') ?? '';
        await handler(key);
        return createPayment(stream, key)(trx);
      },
    });
    const consumer = await jetstream(nc).consumers.get(stream, 'worker');
    // After a reconnect, consume() can go on without pulling: the server's heartbeats stop and
    // it reports them missed, again and again. A service watches for that and starts a new
    // consume(), as this does after three.
    let running = true;
    let messages: ConsumerMessages | undefined;
    const loop = (async () => {
      while (running) {
        const current = await consumer.consume({ max_messages: 20, idle_heartbeat: 500 });
        messages = current;
        void (async () => {
          for await (const status of current.status()) {
            if (status.type === 'heartbeats_missed' && status.count >= 3) await current.close();
          }
        })();
        for await (const message of current) handled.track(handle(message));
      }
    })();
    cleanups.push(async () => {
      running = false;
      await messages?.close();
      await loop.catch(() => undefined);
      await nc.close();
      await handled.settled();
    });
    return { results: handled.results, connected: () => connected };
  }

  it('replays a message whose acknowledgement was lost with the connection, after reconnecting', async () => {
    const nc = await openNats();
    const stream = await newStream(nc);
    const proxy = await proxyTo(NATS_URL);
    const id = uniqueKey('msg');
    await jetstream(nc).publish(stream, '{}', { msgID: id });
    const ran: string[] = [];
    const { results } = await startConsumer(proxy, stream, async (key) => {
      ran.push(key);
      proxy.swallowUpstream();
    });
    await expect.poll(() => results.length, { timeout: 10_000 }).toBe(1);
    proxy.sever();
    await expect.poll(() => results.length, { timeout: 20_000 }).toBe(2);
    expect(results.map((result) => result.outcome)).toEqual(['processed', 'replayed']);
    expect(results[1]).toEqual({
      outcome: 'replayed',
      response: (results[0] as { response: unknown }).response,
    });
    expect(ran).toEqual([id]);
    expect(await fx.countPayments(id, stream)).toBe(1);
  });

  it('gives 300 messages their effect once while the connection is dropped again and again', async () => {
    const nc = await openNats();
    const stream = await newStream(nc);
    const proxy = await proxyTo(NATS_URL);
    const js = jetstream(nc);
    const total = 300;
    for (let i = 0; i < total; i++)
      await js.publish(stream, '{}', { msgID: `m-${i}-${uniqueKey()}` });
    const consumer = await startConsumer(proxy, stream, () => sleep(5));
    await dropRepeatedly(proxy, consumer, 6);
    await expect.poll(async () => (await payments(stream))?.keys, { timeout: 40_000 }).toBe(total);
    const jsm = await jetstreamManager(nc);
    await expect
      .poll(
        async () => {
          const info = await jsm.consumers.info(stream, 'worker');
          return info.num_pending + info.num_ack_pending;
        },
        { timeout: 20_000 },
      )
      .toBe(0);
    expect(await payments(stream)).toEqual({ rows: total, keys: total });
    expect(proxy.severed).toBeGreaterThanOrEqual(6);
  });
});
