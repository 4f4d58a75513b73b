/**
 * What the outbox tests share: producers that enqueue in concurrent transactions, a RabbitMQ queue
 * whose deliveries are recorded in arrival order, and a wrapper around `publish` that records when
 * each publish of a stream ran, to prove that two never overlapped.
 */
import { performance } from 'node:perf_hooks';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { type Kysely, sql } from 'kysely';
import { expect } from 'vitest';
import { enqueueMessage, type OutboxMessage } from '../../src/outbox/index.ts';
import { uniqueName } from './brokers.ts';

/** A delivery as the test consumer saw it. */
export interface Delivered {
  messageId: string;
  body: string;
  headers: Record<string, unknown>;
}

/** A queue (deleted by `remove`) whose deliveries are recorded in order, acknowledged at once. */
export async function recordedQueue(connection: ChannelModel, label: string) {
  const channel = await connection.createChannel();
  const queue = uniqueName(label);
  await channel.assertQueue(queue, { durable: true });
  const delivered: Delivered[] = [];
  await channel.consume(
    queue,
    (message) => {
      if (!message) return;
      delivered.push({
        messageId: String(message.properties.messageId),
        body: message.content.toString(),
        headers: message.properties.headers ?? {},
      });
    },
    { noAck: true },
  );
  return {
    queue,
    delivered,
    /** Waits until `count` messages arrived. */
    async waitFor(count: number, timeoutMs = 30_000) {
      await expect
        .poll(() => delivered.length, {
          timeout: timeoutMs,
          interval: 20,
          message: `${count} messages delivered on ${queue}`,
        })
        .toBeGreaterThanOrEqual(count);
    },
    async remove() {
      await channel.deleteQueue(queue);
      await channel.close();
    },
  };
}

export async function confirmChannel(connection: ChannelModel): Promise<ConfirmChannel> {
  return connection.createConfirmChannel();
}

/** One message enqueued by a committed transaction. */
export interface Produced {
  stream: string;
  messageId: string;
  position: number;
  producer: number;
}

/**
 * `producers` concurrent producers, each committing `perProducer` transactions of one message,
 * on the stream `streamOf(producer, i)`. Each transaction lingers a random moment between the
 * enqueue and the commit, so that commits interleave and come in another order than the inserts.
 */
export async function produce(
  // biome-ignore lint/suspicious/noExplicitAny: any database: the outbox tables are not the caller's.
  db: Kysely<any>,
  options: {
    producers: number;
    perProducer: number;
    topic: string;
    streamOf: (producer: number, i: number) => string;
  },
): Promise<Produced[]> {
  const produced: Produced[] = [];
  await Promise.all(
    Array.from({ length: options.producers }, async (_, producer) => {
      for (let i = 0; i < options.perProducer; i += 1) {
        const stream = options.streamOf(producer, i);
        const enqueued = await db.transaction().execute(async (trx) => {
          const message = await enqueueMessage(trx, {
            stream,
            topic: options.topic,
            payload: { producer, i },
          });
          await sql`select pg_sleep(random() * 0.004)`.execute(trx);
          return message;
        });
        produced.push({ stream, producer, ...enqueued });
      }
    }),
  );
  return produced;
}

/**
 * Fails unless the broker received every produced message once, each stream in position order
 * without gaps: 1, 2, 3..., where a stream may start again at 1 once a relay had emptied it (its
 * counter row is deleted then). The positions are those enqueueMessage returned in the committed
 * transactions.
 */
export function expectStreamsInOrder(deliveredIds: string[], produced: Produced[]): void {
  const byId = new Map(produced.map((message) => [message.messageId, message]));
  expect(new Set(deliveredIds).size, 'each message delivered once').toBe(deliveredIds.length);
  expect([...deliveredIds].sort()).toEqual([...byId.keys()].sort());
  const last = new Map<string, number>();
  for (const id of deliveredIds) {
    const { stream, position } = byId.get(id) as Produced;
    const previous = last.get(stream) ?? 0;
    expect(
      position === previous + 1 || position === 1,
      `${stream}: position ${position} delivered after ${previous}`,
    ).toBe(true);
    last.set(stream, position);
  }
}

export interface PublishInterval {
  relay: number;
  stream: string;
  startMs: number;
  endMs: number;
}

/** `publish`, recording when each call started and settled into `intervals`. */
export function timed(
  relay: number,
  publish: (message: OutboxMessage) => Promise<void>,
  intervals: PublishInterval[],
): (message: OutboxMessage) => Promise<void> {
  return async (message) => {
    const startMs = performance.now();
    try {
      await publish(message);
    } finally {
      intervals.push({ relay, stream: message.stream, startMs, endMs: performance.now() });
    }
  };
}

/** Fails if two publishes of one stream ran at the same time. */
export function expectNoOverlap(intervals: PublishInterval[]): void {
  const byStream = Map.groupBy(intervals, (interval) => interval.stream);
  for (const [stream, list] of byStream) {
    const sorted = [...list].sort((a, b) => a.startMs - b.startMs);
    sorted.slice(1).forEach((interval, index) => {
      const previous = sorted[index] as PublishInterval;
      expect(
        interval.startMs,
        `a publish of ${stream} by relay ${interval.relay} started before relay ${previous.relay}'s ended`,
      ).toBeGreaterThanOrEqual(previous.endMs);
    });
  }
}

/** Business rows (payments) per key in `scope`: 1 for each message whose effect happened once. */
// biome-ignore lint/suspicious/noExplicitAny: any database holding the fixture's payments table.
export async function paymentsPerId(db: Kysely<any>, scope: string) {
  const { rows } = await sql<{ key: string; n: number }>`
    select key, count(*)::int as n from payments where scope = ${scope} group by key`.execute(db);
  return new Map(rows.map((row) => [row.key, row.n]));
}
