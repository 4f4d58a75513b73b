import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { headers, type NatsConnection, nanos } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ConsumeResult, DeadLetter } from '../../src/consumer/index.ts';
import { MissingMessageIdError } from '../../src/consumer/index.ts';
import {
  idempotentJetStreamHandler,
  type JetStreamConsumerOptions,
} from '../../src/consumer/nats/index.ts';
import { InvalidIdempotencyKeyError, InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { openNats, uniqueName } from '../support/brokers.ts';
import { killConsumerAt } from '../support/consumer-crash.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from '../support/ledger-fixture.ts';

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

/**
 * A stream of one subject with a pull consumer 'worker': explicit acks, redelivery of an
 * unacknowledged message after 1 s, no max_deliver (the handler's maxAttempts decides).
 */
async function newStream(duplicateWindowMs = 120_000): Promise<string> {
  const stream = uniqueName('stream');
  await jsm.streams.add({
    name: stream,
    subjects: [stream],
    duplicate_window: nanos(duplicateWindowMs),
  });
  streams.push(stream);
  await jsm.consumers.add(stream, {
    durable_name: 'worker',
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(1000),
    max_deliver: -1,
  });
  return stream;
}

async function publish(stream: string, messageId: string | undefined, body = '{}') {
  return js.publish(stream, body, messageId === undefined ? {} : { msgID: messageId });
}

type Options = Partial<JetStreamConsumerOptions<Kysely<Database>, unknown>>;

/** Consumes from the stream's 'worker' with the adapter until `count` messages are settled. */
async function consume(stream: string, count: number, options: Options = {}) {
  const results: ConsumeResult<unknown>[] = [];
  const ran: string[] = [];
  const deadLetters: DeadLetter<JsMsg>[] = [];
  const handle = idempotentJetStreamHandler(fx.db, {
    scope: stream,
    retryDelayMs: () => 10,
    onDeadLetter: (letter) => {
      deadLetters.push(letter);
    },
    handler: async (trx, message) => {
      const key = message.headers?.get('Nats-Msg-Id') ?? '';
      ran.push(key);
      return createPayment(stream, key)(trx);
    },
    ...options,
  });
  const consumer = await js.consumers.get(stream, 'worker');
  const messages = await consumer.consume({ max_messages: 10 });
  let failure: unknown;
  const loop = (async () => {
    for await (const message of messages) {
      results.push(await handle(message));
      if (results.length === count) break;
    }
  })().catch((error) => {
    failure = error;
  });
  try {
    await expect
      .poll(() => failure ?? results.length, {
        timeout: 15_000,
        message: `${count} messages of ${stream} to be settled`,
      })
      .toBe(count);
  } finally {
    await messages.close();
    await loop;
  }
  return { results, ran, deadLetters };
}

/** Waits until the consumer has no message left to deliver and none awaiting an ack. */
async function expectAllSettled(stream: string) {
  await expect
    .poll(
      async () => {
        const info = await jsm.consumers.info(stream, 'worker');
        return { pending: info.num_pending, ackPending: info.num_ack_pending };
      },
      { timeout: 5000, message: `every message of ${stream} to be settled` },
    )
    .toEqual({ pending: 0, ackPending: 0 });
}

describe('idempotentJetStreamHandler', () => {
  it('processes a message once, with its business row, and acknowledges it', async () => {
    const stream = await newStream();
    const id = uniqueKey('msg');
    await publish(stream, id);
    const { results, ran } = await consume(stream, 1);
    expect(results).toEqual([
      { outcome: 'processed', response: expect.objectContaining({ status: 201 }) },
    ]);
    expect(ran).toEqual([id]);
    expect(await fx.countPayments(id, stream)).toBe(1);
    await expectAllSettled(stream);
  });

  it('runs the handler once for a message published twice after the duplicate window, and acknowledges both', async () => {
    // A 100 ms window: the second publish is stored as a message of its own.
    const stream = await newStream(100);
    const id = uniqueKey('msg');
    const first = await publish(stream, id, '{"n":1}');
    await expect
      .poll(async () => (await publish(stream, id, '{"n":1}')).duplicate, {
        timeout: 5000,
        message: 'the duplicate window to pass, so that JetStream stores the message again',
      })
      .toBe(false);
    const { results, ran } = await consume(stream, 2);
    expect(first.duplicate).toBe(false);
    expect(results.map((result) => result.outcome)).toEqual(['processed', 'replayed']);
    expect(results[1]).toEqual({ ...results[0], outcome: 'replayed' });
    expect(ran).toEqual([id]);
    expect(await fx.countPayments(id, stream)).toBe(1);
    await expectAllSettled(stream);
  });

  const crashes = {
    'before-ack': 'after the commit and before the ack (the redelivery replays)',
    'in-handler': 'inside the handler, before the commit (the redelivery runs)',
  };
  for (const point of ['before-ack', 'in-handler'] as const) {
    it(`gives each of three messages its effect once when the consumer died on the first ${crashes[point]}`, async () => {
      const stream = await newStream();
      const ids = [uniqueKey('msg'), uniqueKey('msg'), uniqueKey('msg')];
      for (const id of ids) await publish(stream, id);
      // The consumer process takes the first message only, and dies with it.
      await killConsumerAt(point, {
        transport: 'nats',
        databaseUrl: fx.url,
        scope: stream,
        source: stream,
      });
      const { results, ran } = await consume(stream, 3);
      const outcomes = results.map((result) => result.outcome).sort();
      if (point === 'before-ack') {
        expect(outcomes).toEqual(['processed', 'processed', 'replayed']);
        expect(ran.sort()).toEqual(ids.slice(1).sort());
      } else {
        expect(outcomes).toEqual(['processed', 'processed', 'processed']);
        expect(ran.sort()).toEqual([...ids].sort());
      }
      for (const id of ids) expect(await fx.countPayments(id, stream)).toBe(1);
      for (const id of ids) expect(await fx.countEntries(id, stream)).toBe(1);
      await expectAllSettled(stream);
    });
  }

  it('dead-letters a message whose handler always fails after maxAttempts, then terminates it', async () => {
    const stream = await newStream();
    const id = uniqueKey('poison');
    await publish(stream, id);
    const attempts: number[] = [];
    const failure = new Error('the handler always fails');
    const { results, deadLetters } = await consume(stream, 3, {
      maxAttempts: 3,
      handler: async (trx, message) => {
        await createPayment(stream, id)(trx);
        attempts.push(message.info.deliveryCount);
        throw failure;
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['retry', 'retry', 'dead_lettered']);
    expect(attempts).toEqual([1, 2, 3]);
    expect(deadLetters).toHaveLength(1);
    expect(deadLetters[0]).toMatchObject({ reason: 'max_attempts', error: failure, attempt: 3 });
    expect(await fx.countPayments(id, stream)).toBe(0);
    expect(await fx.countEntries(id, stream)).toBe(0);
    await expectAllSettled(stream);
  });

  it('dead-letters a message without an id without running the handler, and terminates it', async () => {
    const stream = await newStream();
    await publish(stream, undefined, '{"no":"id"}');
    const { results, ran, deadLetters } = await consume(stream, 1);
    expect(results).toEqual([
      { outcome: 'dead_lettered', reason: 'missing_id', error: expect.any(MissingMessageIdError) },
    ]);
    expect(ran).toEqual([]);
    expect(deadLetters.map((letter) => letter.message.string())).toEqual(['{"no":"id"}']);
    await expectAllSettled(stream);
  });

  it('refuses invalid options where the handler is built', () => {
    const build = (options: object) => () =>
      idempotentJetStreamHandler(fx.db, {
        scope: 's',
        onDeadLetter: () => undefined,
        handler: async () => undefined,
        ...options,
      });
    expect(build({ scope: '' })).toThrow(InvalidIdempotencyOptionsError);
    expect(build({ ttlMs: -1 })).toThrow(/ttlMs/);
    expect(build({ messageId: 'sequence' })).toThrow(/messageId/);
    expect(build({ retryDelayMs: 100 })).toThrow(/retryDelayMs/);
    expect(build({ workingIntervalMs: 0 })).toThrow(/workingIntervalMs/);
    expect(build({ scope: 'a\0b' })).toThrow(/scope/);
    expect(build({ scope: 'a\ud800' })).toThrow(/scope/);
    expect(build({ waitTimeoutMs: 1e12 })).toThrow(/waitTimeoutMs/);
    expect(build({})).not.toThrow();
  });

  it('keys a message by its stream and sequence when told to, and by a header it names', async () => {
    const stream = await newStream();
    const eventId = uniqueKey('event');
    const h = headers();
    h.set('Event-Id', eventId);
    await js.publish(stream, '{}', { headers: h });
    const bySequence = await consume(stream, 1, {
      messageId: 'stream-sequence',
      handler: (trx, message) =>
        createPayment(stream, `${message.info.stream}:${message.info.streamSequence}`)(trx),
    });
    expect(bySequence.results.map((result) => result.outcome)).toEqual(['processed']);
    expect(await fx.countPayments(`${stream}:1`, stream)).toBe(1);
    expect(await fx.countEntries(`${stream}:1`, stream)).toBe(1);

    await js.publish(stream, '{}', { headers: h });
    const byHeader = await consume(stream, 1, {
      messageId: { header: 'Event-Id' },
      handler: (trx) => createPayment(stream, eventId)(trx),
    });
    expect(byHeader.results.map((result) => result.outcome)).toEqual(['processed']);
    expect(await fx.countEntries(eventId, stream)).toBe(1);
    await expectAllSettled(stream);
  });

  it('dead-letters a message whose id function throws as invalid_id, with its error, and terminates it', async () => {
    const stream = await newStream();
    await publish(stream, undefined, 'not json');
    const { results, ran, deadLetters } = await consume(stream, 1, {
      messageId: (message) => message.json<{ id: string }>().id,
    });
    expect(results).toEqual([
      { outcome: 'dead_lettered', reason: 'invalid_id', error: expect.any(Error) },
    ]);
    expect(ran).toEqual([]);
    expect(deadLetters.map((letter) => [letter.reason, letter.attempt])).toEqual([
      ['invalid_id', 1],
    ]);
    await expectAllSettled(stream);
  });

  it('asks for the default redelivery delay when retryDelayMs throws', async () => {
    const stream = await newStream();
    const id = uniqueKey();
    await publish(stream, id);
    let calls = 0;
    const { results } = await consume(stream, 2, {
      retryDelayMs: () => {
        throw new Error('no delay today');
      },
      handler: async (trx) => {
        calls += 1;
        if (calls === 1) throw new Error('the first attempt fails');
        return createPayment(stream, id)(trx);
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['retry', 'processed']);
    expect(await fx.countPayments(id, stream)).toBe(1);
    await expectAllSettled(stream);
  });

  it('keeps a handler that outlasts ack_wait from being redelivered while in flight, with workingIntervalMs', async () => {
    const stream = await newStream();
    const id = uniqueKey();
    await publish(stream, id);
    let runs = 0;
    const { results } = await consume(stream, 1, {
      workingIntervalMs: 300,
      handler: async (trx) => {
        runs += 1;
        // Over twice the consumer's ack_wait of 1 s.
        await new Promise((resolve) => setTimeout(resolve, 2500));
        return createPayment(stream, id)(trx);
      },
    });
    expect(results.map((result) => result.outcome)).toEqual(['processed']);
    expect(runs).toBe(1);
    await expectAllSettled(stream);
    // Each delivery, redeliveries included, takes a consumer sequence number.
    expect((await jsm.consumers.info(stream, 'worker')).delivered.consumer_seq).toBe(1);
  });

  it('dead-letters a message whose id is not a valid key as invalid_id, and terminates it', async () => {
    const stream = await newStream();
    await publish(stream, 'x'.repeat(256));
    const { results, ran } = await consume(stream, 1);
    expect(results).toEqual([
      {
        outcome: 'dead_lettered',
        reason: 'invalid_id',
        error: expect.any(InvalidIdempotencyKeyError),
      },
    ]);
    expect(ran).toEqual([]);
    await expectAllSettled(stream);
  });
});
