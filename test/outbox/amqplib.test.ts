// The outbox to RabbitMQ end to end: what amqpPublisher sets on a message, a relay SIGKILLed
// between the broker's confirm and the delete (the message is published again; the idempotent
// consumer applies it once), and a broker connection cut under the relay.

import { inspect } from 'node:util';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { connect } from 'amqplib';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { idempotentAmqpHandler } from '../../src/consumer/amqplib/index.ts';
import type { ConsumeResult } from '../../src/consumer/index.ts';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { amqpPublisher, UnroutableMessageError } from '../../src/outbox/amqplib/index.ts';
import {
  createOutboxRelay,
  enqueueMessage,
  type OutboxRelay,
  outboxStatus,
} from '../../src/outbox/index.ts';
import { AMQP_URL, openAmqp, uniqueName } from '../support/brokers.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { paymentsPerId, recordedQueue } from '../support/outbox-fixture.ts';
import { killRelayAfterConfirm } from '../support/relay-crash.ts';
import { startSeverableProxy } from '../support/severable-proxy.ts';

const fx = useLedgerFixture();
let connection: ChannelModel;
const cleanups: (() => Promise<unknown>)[] = [];
const relays: OutboxRelay[] = [];

beforeAll(async () => {
  connection = await openAmqp();
});
afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.stop();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await sql`truncate idempotency.outbox, idempotency.outbox_leases`.execute(fx.db);
});
afterAll(async () => {
  await connection?.close();
});

async function confirmChannel(): Promise<ConfirmChannel> {
  const channel = await connection.createConfirmChannel();
  cleanups.push(() => channel.close().catch(() => undefined));
  return channel;
}

/** `count` messages on one stream, each in a transaction of its own, to the queue `topic`. */
async function enqueueMany(topic: string, count: number) {
  const stream = uniqueKey('stream');
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const { messageId } = await fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic, payload: { i } }));
    ids.push(messageId);
  }
  return ids;
}

/**
 * A queue consumed by idempotentAmqpHandler, whose handler writes one payment per message id (in
 * the scope `queue`): the business effect the outbox's duplicates must not repeat.
 */
async function idempotentConsumer() {
  const channel = await connection.createChannel();
  const queue = uniqueName('outbox');
  await channel.assertQueue(queue, { durable: true });
  cleanups.push(async () => {
    await channel.deleteQueue(queue);
    await channel.close();
  });
  const results: ConsumeResult<unknown>[] = [];
  const handle = idempotentAmqpHandler(fx.db, channel, {
    scope: queue,
    onDeadLetter: () => {
      throw new Error('no message is dead-lettered here');
    },
    handler: (trx, message: ConsumeMessage) =>
      createPayment(queue, String(message.properties.messageId))(trx),
  });
  await channel.consume(queue, (message) => {
    if (message) void handle(message).then((result) => results.push(result));
  });
  return {
    queue,
    results,
    async waitForSettled(count: number) {
      await expect
        .poll(() => results.length, {
          timeout: 30_000,
          interval: 20,
          message: `${count} deliveries of ${queue} settled`,
        })
        .toBeGreaterThanOrEqual(count);
    },
  };
}

describe('amqpPublisher', () => {
  it('publishes persistent JSON with the outbox message id, its headers, to the topic as routing key', async () => {
    const channel = await connection.createChannel();
    const queue = uniqueName('props');
    await channel.assertQueue(queue);
    cleanups.push(async () => {
      await channel.deleteQueue(queue);
      await channel.close();
    });
    const received = new Promise<ConsumeMessage>((resolve) => {
      void channel.consume(queue, (message) => message && resolve(message), { noAck: true });
    });
    const payload = { z: 1, a: 'é', list: [1, 2.5, null] };
    const { messageId } = await fx.db.transaction().execute((trx) =>
      enqueueMessage(trx, {
        stream: uniqueKey('stream'),
        topic: queue,
        payload,
        headers: { 'x-tenant': 't1' },
      }),
    );
    const relay = createOutboxRelay(fx.db, { publish: amqpPublisher(await confirmChannel()) });
    expect(await relay.relayOnce()).toMatchObject({ published: 1 });
    const message = await received;
    expect(message.content.toString()).toBe(JSON.stringify(payload));
    expect(message.properties).toMatchObject({
      messageId,
      contentType: 'application/json',
      deliveryMode: 2,
      headers: { 'x-tenant': 't1' },
    });
  });

  it('publishes to the exchange and routing key it is given', async () => {
    const { queue, delivered, waitFor, remove } = await recordedQueue(connection, 'routed');
    cleanups.push(remove);
    const setup = await connection.createChannel();
    const exchange = uniqueName('exchange');
    await setup.assertExchange(exchange, 'direct', { durable: false, autoDelete: false });
    await setup.bindQueue(queue, exchange, 'orders.created');
    cleanups.push(async () => {
      await setup.deleteExchange(exchange);
      await setup.close();
    });
    const [id] = await enqueueMany('created', 1);
    const publish = amqpPublisher(await confirmChannel(), {
      exchange,
      routingKey: (message) => `orders.${message.topic}`,
    });
    expect(await createOutboxRelay(fx.db, { publish }).relayOnce()).toMatchObject({
      published: 1,
    });
    await waitFor(1);
    expect(delivered.map((message) => message.messageId)).toEqual([id]);
  });

  it('fails the publish the broker refuses (no such exchange yet), and opens a new channel for the next one', async () => {
    const { queue, delivered, waitFor, remove } = await recordedQueue(connection, 'refused');
    cleanups.push(remove);
    const ids = await enqueueMany('refused', 2);
    const exchange = uniqueName('late-exchange');
    let opened = 0;
    const publish = amqpPublisher(
      async () => {
        opened += 1;
        const channel = await connection.createConfirmChannel();
        // The broker closes a channel that publishes to a missing exchange, with an error event.
        channel.on('error', () => undefined);
        cleanups.push(() => channel.close().catch(() => undefined));
        return channel;
      },
      { exchange },
    );
    const errors: unknown[] = [];
    const relay = createOutboxRelay(fx.db, {
      publish,
      retryDelayMs: () => 0,
      onError: (error) => errors.push(error),
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(errors).toHaveLength(1);
    expect((await outboxStatus(fx.db))[0]).toMatchObject({ state: 'failing', headAttempts: 1 });

    // The exchange is declared: the next pass publishes on a new channel.
    const setup = await connection.createChannel();
    await setup.assertExchange(exchange, 'fanout', { durable: false });
    await setup.bindQueue(queue, exchange, '');
    cleanups.push(async () => {
      await setup.deleteExchange(exchange);
      await setup.close();
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 2, failed: 0 });
    await waitFor(2);
    expect(delivered.map((message) => message.messageId)).toEqual(ids);
    expect(opened).toBe(2);
  });

  it('keeps a message no queue takes (returned by the broker) and counts it failed; delivers it once a queue is bound', async () => {
    const topic = uniqueName('unbound');
    const ids = await enqueueMany(topic, 2);
    const errors: unknown[] = [];
    let opened = 0;
    const relay = createOutboxRelay(fx.db, {
      publish: amqpPublisher(() => {
        opened += 1;
        return confirmChannel();
      }),
      retryDelayMs: () => 0,
      onError: (error) => errors.push(error),
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(errors[0]).toBeInstanceOf(UnroutableMessageError);
    const text = inspect(errors[0], { depth: 5 });
    for (const id of ids) expect(text).not.toContain(id);
    expect(await outboxStatus(fx.db)).toEqual([
      expect.objectContaining({ pending: 2, state: 'failing', headAttempts: 1 }),
    ]);

    // A queue named after the topic: the default exchange routes to it.
    const channel = await connection.createChannel();
    await channel.assertQueue(topic);
    cleanups.push(async () => {
      await channel.deleteQueue(topic);
      await channel.close();
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 2, failed: 0 });
    const delivered: unknown[] = [];
    for (
      let message = await channel.get(topic, { noAck: true });
      message;
      message = await channel.get(topic, { noAck: true })
    ) {
      delivered.push(message.properties.messageId);
    }
    expect(delivered).toEqual(ids);
    // A returned message leaves its channel open and usable: no new one was opened (or leaked).
    expect(opened).toBe(1);
  });

  it('refuses a channel without publisher confirms, and fails each publish on one a channel function returns', async () => {
    const plain = await connection.createChannel();
    cleanups.push(() => plain.close().catch(() => undefined));
    expect(() => amqpPublisher(plain as unknown as ConfirmChannel)).toThrow(
      InvalidIdempotencyOptionsError,
    );
    await enqueueMany(uniqueName('plain'), 1);
    const errors: unknown[] = [];
    let opened = 0;
    const relay = createOutboxRelay(fx.db, {
      publish: amqpPublisher(async () => {
        opened += 1;
        return plain as unknown as ConfirmChannel;
      }),
      publishTimeoutMs: 2000,
      retryDelayMs: () => 0,
      onError: (error) => errors.push(error),
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(errors.map((error) => error instanceof InvalidIdempotencyOptionsError)).toEqual([
      true,
      true,
    ]);
    // Checked once: the channel is kept, not opened again on every attempt.
    expect(opened).toBe(1);
    expect(await outboxStatus(fx.db)).toEqual([expect.objectContaining({ pending: 1 })]);
  });
});

describe('the outbox with RabbitMQ', () => {
  it('republishes a message whose relay was SIGKILLed after the confirm, 3 times over 20 messages, and the consumer applies each once', async () => {
    const consumer = await idempotentConsumer();
    const ids = await enqueueMany(consumer.queue, 20);
    for (const position of [3, 6, 9]) {
      await killRelayAfterConfirm(position, { transport: 'amqplib', databaseUrl: fx.url });
    }
    // A relay that lives: it takes the stream over once the last killed relay's lease ran out.
    const relay = createOutboxRelay(fx.db, {
      publish: amqpPublisher(await confirmChannel()),
      pollIntervalMs: 10,
    });
    relays.push(relay);
    relay.start();
    await consumer.waitForSettled(23);
    await expect
      .poll(async () => outboxStatus(fx.db), { message: 'the outbox to be empty' })
      .toEqual([]);

    // Published 23 times: 20 messages, the 3 at which a relay died twice each.
    const outcomes = consumer.results.map((result) => result.outcome);
    expect(outcomes.filter((outcome) => outcome === 'processed')).toHaveLength(20);
    expect(outcomes.filter((outcome) => outcome === 'replayed')).toHaveLength(3);
    expect(outcomes).toHaveLength(23);
    const payments = await paymentsPerId(fx.db, consumer.queue);
    expect([...payments.keys()].sort()).toEqual([...ids].sort());
    expect([...payments.values()].every((count) => count === 1)).toBe(true);
  });

  it('delivers every message once in effect when the connection to the broker is cut mid-run, reconnecting through the channel function', async () => {
    const consumer = await idempotentConsumer();
    const ids = await enqueueMany(consumer.queue, 30);
    const target = new URL(AMQP_URL);
    const proxy = await startSeverableProxy({
      host: target.hostname,
      port: Number(target.port || 5672),
    });
    cleanups.push(() => proxy.close());
    const viaProxy = new URL(AMQP_URL);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);

    // The caller's channel function reconnects; the publisher calls it again after a failure.
    let connections = 0;
    let current: ChannelModel | undefined;
    const openChannel = async () => {
      if (current === undefined) {
        const opened = await connect(viaProxy.toString());
        connections += 1;
        opened.on('error', () => undefined);
        opened.on('close', () => {
          if (current === opened) current = undefined;
        });
        current = opened;
        cleanups.push(() => opened.close().catch(() => undefined));
      }
      const channel = await current.createConfirmChannel();
      channel.on('error', () => undefined);
      return channel;
    };
    const real = amqpPublisher(openChannel);
    let severed = 0;
    const errors: unknown[] = [];
    const relay = createOutboxRelay(fx.db, {
      // The cut comes while the 10th message is being published.
      publish: async (message) => {
        if (message.position === 10 && severed === 0) {
          severed = proxy.sever();
        }
        await real(message);
      },
      retryDelayMs: () => 20,
      pollIntervalMs: 10,
      onError: (error) => errors.push(error),
    });
    relays.push(relay);
    relay.start();
    await consumer.waitForSettled(30);
    await expect
      .poll(async () => outboxStatus(fx.db), { message: 'the outbox to be empty' })
      .toEqual([]);

    expect(severed).toBeGreaterThan(0);
    expect(errors.length).toBeGreaterThan(0);
    expect(connections).toBeGreaterThanOrEqual(2);
    const payments = await paymentsPerId(fx.db, consumer.queue);
    expect([...payments.keys()].sort()).toEqual([...ids].sort());
    expect([...payments.values()].every((count) => count === 1)).toBe(true);
  });
});
