import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type AmqpConsumerOptions,
  idempotentAmqpHandler,
} from '../../src/consumer/amqplib/index.ts';
import type { ConsumeResult, DeadLetter } from '../../src/consumer/index.ts';
import { MessageAttemptsExhaustedError, MissingMessageIdError } from '../../src/consumer/index.ts';
import {
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  withIdempotency,
} from '../../src/index.ts';
import { deferred, waitForLockWaiters } from '../support/barrier.ts';
import { openAmqp, uniqueName } from '../support/brokers.ts';
import { killConsumerAt } from '../support/consumer-crash.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from '../support/ledger-fixture.ts';

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

async function newQueue(type: 'classic' | 'quorum' = 'classic'): Promise<string> {
  const queue = uniqueName(type);
  queues.push(queue);
  await channel.assertQueue(
    queue,
    type === 'quorum' ? { durable: true, arguments: { 'x-queue-type': 'quorum' } } : {},
  );
  return queue;
}

function publish(queue: string, messageId: string | undefined, body = '{}') {
  channel.sendToQueue(queue, Buffer.from(body), messageId === undefined ? {} : { messageId });
}

type Options = Partial<AmqpConsumerOptions<Kysely<Database>, unknown>>;

/**
 * Consumes from `queue` on a channel of its own with the adapter until `count` messages are
 * settled, then closes that channel (requeueing whatever it left unacknowledged).
 */
async function consume(queue: string, count: number, options: Options = {}) {
  const own = await connection.createChannel();
  const results: ConsumeResult<unknown>[] = [];
  const ran: string[] = [];
  const deadLetters: DeadLetter<ConsumeMessage>[] = [];
  const handle = idempotentAmqpHandler(fx.db, own, {
    scope: queue,
    retryDelayMs: () => 10,
    onDeadLetter: (letter) => {
      deadLetters.push(letter);
    },
    handler: async (trx, message) => {
      const key = String(message.properties.messageId);
      ran.push(key);
      return createPayment(queue, key)(trx);
    },
    ...options,
  });
  let failure: unknown;
  await own.consume(queue, (message) => {
    if (message)
      handle(message).then(
        (result) => results.push(result),
        (error) => {
          failure = error;
        },
      );
  });
  try {
    await expect
      .poll(() => failure ?? results.length, {
        timeout: 15_000,
        message: `${count} messages of ${queue} to be settled`,
      })
      .toBe(count);
  } finally {
    await own.close();
  }
  return { results, ran, deadLetters };
}

/** Messages left in the queue: ready, or requeued because nobody acknowledged them. */
async function messagesLeft(queue: string): Promise<number> {
  return (await channel.checkQueue(queue)).messageCount;
}

describe('idempotentAmqpHandler', () => {
  it('processes a message once, with its business row, and acknowledges it', async () => {
    const queue = await newQueue();
    const id = uniqueKey('msg');
    publish(queue, id);
    const { results, ran } = await consume(queue, 1);
    expect(results).toEqual([
      { outcome: 'processed', response: expect.objectContaining({ status: 201 }) },
    ]);
    expect(ran).toEqual([id]);
    expect(await fx.countPayments(id, queue)).toBe(1);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('runs the handler once for a message published twice, both copies in flight at once, and acknowledges both', async () => {
    const queue = await newQueue();
    const ids = [uniqueKey('msg'), uniqueKey('msg'), uniqueKey('msg')];
    for (const id of ids) publish(queue, id);
    for (const id of ids) publish(queue, id);
    // No prefetch limit: the six deliveries are handled concurrently. Each first copy's handler is
    // held until Postgres shows its three twins waiting at the claim, so that each copy meets its
    // twin in flight (it waits for it, then replays).
    const gate = deferred();
    const ran: string[] = [];
    const consuming = consume(queue, 6, {
      handler: async (trx, message) => {
        const key = String(message.properties.messageId);
        ran.push(key);
        await gate.promise;
        return createPayment(queue, key)(trx);
      },
    });
    await waitForLockWaiters(fx.db, 3, 10_000);
    gate.resolve();
    const { results } = await consuming;
    const outcomes = results.map((result) => result.outcome).sort();
    expect(outcomes).toEqual([
      'processed',
      'processed',
      'processed',
      'replayed',
      'replayed',
      'replayed',
    ]);
    expect(ran.sort()).toEqual([...ids].sort());
    for (const id of ids) expect(await fx.countPayments(id, queue)).toBe(1);
    // Each replay returns its first run's response: three distinct responses, each twice.
    const responses = results.map((result) =>
      JSON.stringify('response' in result && result.response),
    );
    expect(new Set(responses).size).toBe(3);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('takes the id from a header it is told to read', async () => {
    const queue = await newQueue();
    const id = uniqueKey('msg');
    for (let i = 0; i < 2; i++) {
      channel.sendToQueue(queue, Buffer.from('{}'), { headers: { 'x-event-id': id } });
    }
    const { results } = await consume(queue, 2, {
      messageId: { header: 'x-event-id' },
      handler: (trx) => createPayment(queue, id)(trx),
    });
    // Both copies are in flight at once: either may settle first.
    expect(results.map((result) => result.outcome).sort()).toEqual(['processed', 'replayed']);
    expect(await fx.countPayments(id, queue)).toBe(1);
  });

  const crashes = {
    'before-ack': 'after the commit and before the ack (the redelivery replays)',
    'in-handler': 'inside the handler, before the commit (the redelivery runs)',
  };
  for (const point of ['before-ack', 'in-handler'] as const) {
    it(`gives each of three messages its effect once when the consumer died on the first ${crashes[point]}`, async () => {
      const queue = await newQueue();
      const ids = [uniqueKey('msg'), uniqueKey('msg'), uniqueKey('msg')];
      for (const id of ids) publish(queue, id);
      // The consumer process takes the first message only, and dies with it.
      await killConsumerAt(point, {
        transport: 'amqplib',
        databaseUrl: fx.url,
        scope: queue,
        source: queue,
      });
      const { results, ran } = await consume(queue, 3);
      const outcomes = results.map((result) => result.outcome).sort();
      if (point === 'before-ack') {
        expect(outcomes).toEqual(['processed', 'processed', 'replayed']);
        expect(ran.sort()).toEqual(ids.slice(1).sort());
      } else {
        expect(outcomes).toEqual(['processed', 'processed', 'processed']);
        expect(ran.sort()).toEqual([...ids].sort());
      }
      for (const id of ids) expect(await fx.countPayments(id, queue)).toBe(1);
      for (const id of ids) expect(await fx.countEntries(id, queue)).toBe(1);
      expect(await messagesLeft(queue)).toBe(0);
    });
  }

  for (const type of ['classic', 'quorum'] as const) {
    it(`dead-letters a message whose handler always fails after maxAttempts, then acknowledges it (${type} queue)`, async () => {
      const queue = await newQueue(type);
      const id = uniqueKey('poison');
      publish(queue, id);
      const attempts: number[] = [];
      const failure = new Error('the handler always fails');
      const { results, deadLetters } = await consume(queue, 3, {
        maxAttempts: 3,
        handler: async (trx, message) => {
          await createPayment(queue, id)(trx);
          attempts.push(Number(message.properties.headers?.['x-delivery-count'] ?? 0));
          throw failure;
        },
      });
      expect(results.map((result) => result.outcome)).toEqual(['retry', 'retry', 'dead_lettered']);
      expect(deadLetters).toHaveLength(1);
      expect(deadLetters[0]).toMatchObject({ reason: 'max_attempts', error: failure, attempt: 3 });
      expect(deadLetters[0]?.message.properties.messageId).toBe(id);
      // A quorum queue counts the deliveries itself; for a classic one the adapter counts them.
      expect(attempts).toEqual(type === 'quorum' ? [0, 1, 2] : [0, 0, 0]);
      expect(await fx.countPayments(id, queue)).toBe(0);
      expect(await fx.countEntries(id, queue)).toBe(0);
      expect(await messagesLeft(queue)).toBe(0);
    });
  }

  it('dead-letters a message without an id without running the handler, and acknowledges it', async () => {
    const queue = await newQueue();
    publish(queue, undefined, '{"no":"id"}');
    const { results, ran, deadLetters } = await consume(queue, 1);
    expect(results).toEqual([
      { outcome: 'dead_lettered', reason: 'missing_id', error: expect.any(MissingMessageIdError) },
    ]);
    expect(ran).toEqual([]);
    expect(deadLetters.map((letter) => [letter.reason, letter.message.content.toString()])).toEqual(
      [['missing_id', '{"no":"id"}']],
    );
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('refuses invalid options where the handler is built', () => {
    const build = (options: object) => () =>
      idempotentAmqpHandler(fx.db, channel, {
        scope: 'q',
        onDeadLetter: () => undefined,
        handler: async () => undefined,
        ...options,
      });
    expect(build({ onDeadLetter: undefined })).toThrow(InvalidIdempotencyOptionsError);
    expect(build({ maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(build({ messageId: { header: '' } })).toThrow(/messageId/);
    expect(build({ handler: 'insert' })).toThrow(/handler/);
    expect(build({ scope: 'a\0b' })).toThrow(/scope/);
    expect(build({ scope: 'a\ud800' })).toThrow(/scope/);
    expect(build({ waitTimeoutMs: 1e12 })).toThrow(/waitTimeoutMs/);
    expect(build({})).not.toThrow();
  });

  it('requeues a dead message whose onDeadLetter fails, and settles it once onDeadLetter succeeds', async () => {
    const queue = await newQueue();
    publish(queue, undefined);
    let calls = 0;
    const { results } = await consume(queue, 2, {
      onDeadLetter: () => {
        calls += 1;
        if (calls === 1) throw new Error('the dead-letter store is down');
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['retry', 'dead_lettered']);
    expect(calls).toBe(2);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('dead-letters a message whose id function throws as invalid_id, with its error, and acknowledges it', async () => {
    const queue = await newQueue();
    publish(queue, undefined, 'not json');
    const { results, ran, deadLetters } = await consume(queue, 1, {
      messageId: (message) => JSON.parse(message.content.toString()).id,
    });
    expect(results).toEqual([
      { outcome: 'dead_lettered', reason: 'invalid_id', error: expect.any(SyntaxError) },
    ]);
    expect(ran).toEqual([]);
    expect(deadLetters.map((letter) => [letter.reason, letter.attempt])).toEqual([
      ['invalid_id', 1],
    ]);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('requeues a failed message with the default delay when retryDelayMs throws', async () => {
    const queue = await newQueue();
    const id = uniqueKey();
    publish(queue, id);
    let calls = 0;
    const { results } = await consume(queue, 2, {
      retryDelayMs: () => {
        throw new Error('no delay today');
      },
      handler: async (trx) => {
        calls += 1;
        if (calls === 1) throw new Error('the first attempt fails');
        return createPayment(queue, id)(trx);
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['retry', 'processed']);
    expect(await fx.countPayments(id, queue)).toBe(1);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('processes a classic-queue message whose publisher set x-delivery-count, rather than dead-lettering it', async () => {
    const queue = await newQueue();
    const id = uniqueKey();
    channel.sendToQueue(queue, Buffer.from('{}'), {
      messageId: id,
      headers: { 'x-delivery-count': 99 },
    });
    const { results, ran, deadLetters } = await consume(queue, 1, { maxAttempts: 3 });
    expect(results.map((result) => result.outcome)).toEqual(['processed']);
    expect(ran).toEqual([id]);
    expect(deadLetters).toEqual([]);
    expect(await fx.countPayments(id, queue)).toBe(1);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('replays a message whose ack failed after the commit because the channel closed, without running the handler again', async () => {
    const queue = await newQueue();
    const id = uniqueKey();
    publish(queue, id);
    const own = await connection.createChannel();
    let runs = 0;
    const handle = idempotentAmqpHandler(fx.db, own, {
      scope: queue,
      onDeadLetter: () => undefined,
      handler: async (trx) => {
        runs += 1;
        const response = await createPayment(queue, id)(trx);
        // The broker requeues the unacknowledged message; the ack after the commit then fails.
        await own.close();
        return response;
      },
    });
    const settled = deferred<unknown>();
    await own.consume(queue, (message) => {
      if (message) handle(message).then(settled.resolve, settled.resolve);
    });
    expect(await settled.promise).toBeInstanceOf(Error);
    expect(await fx.countPayments(id, queue)).toBe(1);

    const { results } = await consume(queue, 1, {
      handler: async (trx) => {
        runs += 1;
        return createPayment(queue, id)(trx);
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['replayed']);
    expect(runs).toBe(1);
    expect(await fx.countPayments(id, queue)).toBe(1);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('requeues a message whose onDeadLetter fails after its last attempt, then dead-letters it without running the handler again', async () => {
    const queue = await newQueue();
    const id = uniqueKey('poison');
    publish(queue, id);
    let runs = 0;
    let deadLetterCalls = 0;
    const failure = new Error('the handler always fails');
    const { results } = await consume(queue, 3, {
      maxAttempts: 2,
      handler: async () => {
        runs += 1;
        throw failure;
      },
      onDeadLetter: () => {
        deadLetterCalls += 1;
        if (deadLetterCalls === 1) throw new Error('the dead-letter store is down');
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['retry', 'retry', 'dead_lettered']);
    expect(results[2]).toMatchObject({ error: expect.any(MessageAttemptsExhaustedError) });
    expect([runs, deadLetterCalls]).toEqual([2, 2]);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('dead-letters a message whose id is not a valid key as invalid_id, and acknowledges it', async () => {
    const queue = await newQueue();
    publish(queue, 'café');
    const { results, ran } = await consume(queue, 1);
    expect(results).toEqual([
      {
        outcome: 'dead_lettered',
        reason: 'invalid_id',
        error: expect.any(InvalidIdempotencyKeyError),
      },
    ]);
    expect(ran).toEqual([]);
    expect(await messagesLeft(queue)).toBe(0);
  });

  it('does not count towards maxAttempts the deliveries that failed before the handler (a classic queue)', async () => {
    const queue = await newQueue();
    const id = uniqueKey();
    // Another transaction holds the message's key, then rolls back: meanwhile every delivery
    // gives up its wait at the claim, before the handler.
    const inside = deferred();
    const release = deferred();
    const holder = withIdempotency(fx.db, { scope: queue, key: id, ttlMs: 60_000 }, async () => {
      inside.resolve();
      await release.promise;
      throw new Error('the holder rolls back');
    }).catch(() => undefined);
    await inside.promise;
    publish(queue, id);
    const own = await connection.createChannel();
    const results: ConsumeResult<unknown>[] = [];
    let runs = 0;
    const handle = idempotentAmqpHandler(fx.db, own, {
      scope: queue,
      maxAttempts: 1,
      waitTimeoutMs: 50,
      retryDelayMs: () => 10,
      onDeadLetter: () => undefined,
      handler: async (trx) => {
        runs += 1;
        return createPayment(queue, id)(trx);
      },
    });
    let failure: unknown;
    await own.consume(queue, (message) => {
      if (message)
        handle(message).then(
          (result) => results.push(result),
          (error) => {
            failure = error;
          },
        );
    });
    try {
      await expect.poll(() => results.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
      release.resolve();
      await holder;
      await expect.poll(() => results.at(-1)?.outcome, { timeout: 10_000 }).not.toBe('retry');
    } finally {
      release.resolve();
      await own.close();
    }
    expect(failure).toBeUndefined();
    expect(results.slice(0, -1).every((result) => result.outcome === 'retry')).toBe(true);
    expect(results.at(-1)?.outcome).toBe('processed');
    expect(runs).toBe(1);
    expect(await fx.countPayments(id, queue)).toBe(1);
  });
});
