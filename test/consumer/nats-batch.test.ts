import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../../src/consumer/index.ts';
import { idempotentJetStreamBatchHandler } from '../../src/consumer/nats/index.ts';
import { openNats, uniqueName } from '../support/brokers.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const streams: string[] = [];

let unreachable: unknown;
beforeAll(async () => {
  try {
    nc = await openNats();
  } catch (error) {
    unreachable = error;
    return;
  }
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});
// Each test fails with the server's error, rather than being reported as skipped.
beforeEach(() => {
  if (unreachable) throw unreachable;
});
afterEach(async () => {
  for (const stream of streams.splice(0)) await jsm.streams.delete(stream);
});
afterAll(async () => {
  await nc?.close();
});

/** A stream of one subject with a pull consumer 'worker' (explicit acks, no max_deliver). */
async function newStream(): Promise<string> {
  const stream = uniqueName('batch-stream');
  await jsm.streams.add({ name: stream, subjects: [stream] });
  streams.push(stream);
  await jsm.consumers.add(stream, {
    durable_name: 'worker',
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(5000),
    max_deliver: -1,
  });
  return stream;
}

/** Fetches from the stream's 'worker' until `count` messages are in hand (at most 15 s). */
async function fetchBatch(stream: string, count: number): Promise<JsMsg[]> {
  const consumer = await js.consumers.get(stream, 'worker');
  const messages: JsMsg[] = [];
  const deadline = Date.now() + 15_000;
  while (messages.length < count && Date.now() < deadline) {
    const fetched = await consumer.fetch({ max_messages: count - messages.length, expires: 1000 });
    for await (const message of fetched) messages.push(message);
  }
  expect(messages, `${count} messages fetched from ${stream}`).toHaveLength(count);
  return messages;
}

describe('idempotentJetStreamBatchHandler', () => {
  it('processes a fetched batch in one go, terminates a message without id, and naks a failing one until it is dead-lettered', async () => {
    const stream = await newStream();
    const [good1, poison, good2] = [uniqueKey('a'), uniqueKey('poison'), uniqueKey('b')];
    for (const id of [good1, poison, undefined, good2]) {
      await js.publish(stream, '{}', id === undefined ? {} : { msgID: id });
    }
    const deadLetters: DeadLetter<JsMsg>[] = [];
    const failure = new Error('poison message');
    const handle = idempotentJetStreamBatchHandler(fx.db, {
      scope: stream,
      maxAttempts: 2,
      retryDelayMs: () => 10,
      onDeadLetter: (letter) => void deadLetters.push(letter),
      handler: async (trx, message) => {
        const id = message.headers?.get('Nats-Msg-Id') ?? '';
        const response = await createPayment(stream, id)(trx);
        if (id === poison) throw failure;
        return response;
      },
    });
    const first = await handle(await fetchBatch(stream, 4));
    expect(first.map((result) => result.outcome)).toEqual([
      'processed',
      'retry',
      'dead_lettered',
      'processed',
    ]);
    // Redelivered by the server (deliveryCount 2, the last attempt): dead-lettered and terminated.
    const second = await handle(await fetchBatch(stream, 1));
    expect(second).toMatchObject([{ outcome: 'dead_lettered', reason: 'max_attempts' }]);
    expect(deadLetters.map(({ reason }) => reason)).toEqual(['missing_id', 'max_attempts']);
    await expect
      .poll(
        async () => {
          const info = await jsm.consumers.info(stream, 'worker');
          return { pending: info.num_pending, ackPending: info.num_ack_pending };
        },
        { timeout: 5000, message: `every message of ${stream} to be settled` },
      )
      .toEqual({ pending: 0, ackPending: 0 });
    expect(await fx.countPayments(good1, stream)).toBe(1);
    expect(await fx.countPayments(good2, stream)).toBe(1);
    expect(await fx.countPayments(poison, stream)).toBe(0);
  });
});
