import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { idempotentAmqpBatchHandler } from '../../src/consumer/amqplib/index.ts';
import type { DeadLetter } from '../../src/consumer/index.ts';
import { InvalidIdempotencyOptionsError, MAX_BATCH_ITEMS } from '../../src/index.ts';
import { openAmqp, uniqueName } from '../support/brokers.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
let connection: ChannelModel;
let channel: Channel;
const queues: string[] = [];

let unreachable: unknown;
beforeAll(async () => {
  try {
    connection = await openAmqp();
  } catch (error) {
    unreachable = error;
    return;
  }
  channel = await connection.createChannel();
});
// Each test fails with the broker's error, rather than being reported as skipped.
beforeEach(() => {
  if (unreachable) throw unreachable;
});
afterEach(async () => {
  for (const queue of queues.splice(0)) await channel?.deleteQueue(queue);
});
afterAll(async () => {
  await connection?.close();
});

async function newQueue(): Promise<string> {
  const queue = uniqueName('batch');
  queues.push(queue);
  await channel.assertQueue(queue);
  return queue;
}

function publish(queue: string, messageId: string | undefined) {
  channel.sendToQueue(queue, Buffer.from('{}'), messageId === undefined ? {} : { messageId });
}

/** Takes `count` messages from `queue` on a channel of its own, unacknowledged, as one batch. */
async function gather(consuming: Channel, queue: string, count: number): Promise<ConsumeMessage[]> {
  const messages: ConsumeMessage[] = [];
  const { consumerTag } = await consuming.consume(queue, (message) => {
    if (message) messages.push(message);
  });
  try {
    await expect
      .poll(() => messages.length, { timeout: 15_000, message: `${count} messages of ${queue}` })
      .toBe(count);
  } finally {
    await consuming.cancel(consumerTag);
  }
  return messages;
}

async function messagesLeft(queue: string): Promise<number> {
  return (await channel.checkQueue(queue)).messageCount;
}

describe('idempotentAmqpBatchHandler', () => {
  it('processes a batch in one go, dead-letters a message without id, and requeues a failing one until it is dead-lettered', async () => {
    const queue = await newQueue();
    const [good1, poison, good2] = [uniqueKey('a'), uniqueKey('poison'), uniqueKey('b')];
    for (const id of [good1, poison, undefined, good2]) publish(queue, id);
    const own = await connection.createChannel();
    await own.prefetch(10);
    const deadLetters: DeadLetter<ConsumeMessage>[] = [];
    const failure = new Error('poison message');
    const ran: string[] = [];
    const handle = idempotentAmqpBatchHandler(fx.db, own, {
      scope: queue,
      maxAttempts: 2,
      retryDelayMs: () => 10,
      onDeadLetter: (letter) => void deadLetters.push(letter),
      handler: async (trx, message) => {
        const id = String(message.properties.messageId);
        ran.push(id);
        const response = await createPayment(queue, id)(trx);
        if (id === poison) throw failure;
        return response;
      },
    });
    try {
      const first = await handle(await gather(own, queue, 4));
      expect(first.map((result) => result.outcome)).toEqual([
        'processed',
        'retry',
        'dead_lettered',
        'processed',
      ]);
      // Requeued: the poison comes back, on its last attempt (counted in this process).
      const second = await handle(await gather(own, queue, 1));
      expect(second).toMatchObject([{ outcome: 'dead_lettered', reason: 'max_attempts' }]);
    } finally {
      await own.close();
    }
    expect(deadLetters.map(({ reason }) => reason)).toEqual(['missing_id', 'max_attempts']);
    // The cost of the failure policy: the batch rolled back, and the others ran again on their own.
    expect(ran.filter((id) => id === good1)).toHaveLength(2);
    expect(await messagesLeft(queue)).toBe(0);
    expect(await fx.countPayments(good1, queue)).toBe(1);
    expect(await fx.countPayments(good2, queue)).toBe(1);
    expect(await fx.countPayments(poison, queue)).toBe(0);
  });

  it('acknowledges a republished batch as replays, without running the handler', async () => {
    const queue = await newQueue();
    const ids = [uniqueKey('m'), uniqueKey('m'), uniqueKey('m')];
    const own = await connection.createChannel();
    let ran = 0;
    const handle = idempotentAmqpBatchHandler(fx.db, own, {
      scope: queue,
      onDeadLetter: () => {
        throw new Error('nothing is dead-lettered here');
      },
      handler: async (trx, message) => {
        ran += 1;
        return createPayment(queue, String(message.properties.messageId))(trx);
      },
    });
    try {
      for (const id of ids) publish(queue, id);
      const first = await handle(await gather(own, queue, 3));
      for (const id of ids) publish(queue, id);
      const again = await handle(await gather(own, queue, 3));
      expect(again.map((result) => result.outcome)).toEqual(['replayed', 'replayed', 'replayed']);
      expect(JSON.stringify(again.map((r) => ('response' in r ? r.response : r)))).toBe(
        JSON.stringify(first.map((r) => ('response' in r ? r.response : r))),
      );
      await expect(handle(new Array(MAX_BATCH_ITEMS + 1))).rejects.toBeInstanceOf(
        InvalidIdempotencyOptionsError,
      );
    } finally {
      await own.close();
    }
    expect(ran).toBe(3);
    expect(await messagesLeft(queue)).toBe(0);
    for (const id of ids) expect(await fx.countPayments(id, queue)).toBe(1);
  });
});
