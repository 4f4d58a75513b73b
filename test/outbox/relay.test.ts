// The relay against real RabbitMQ: per-stream order in commit order under concurrent producers,
// several relays that never publish one stream at once, retries, backoff and parking.
import type { ChannelModel } from 'amqplib';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { amqpPublisher } from '../../src/outbox/amqplib/index.ts';
import {
  createOutboxRelay,
  enqueueMessage,
  type OutboxMessage,
  type OutboxRelay,
  outboxStatus,
  releaseParkedMessage,
} from '../../src/outbox/index.ts';
import { openAmqp } from '../support/brokers.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import {
  expectNoOverlap,
  expectStreamsInOrder,
  type PublishInterval,
  produce,
  recordedQueue,
  timed,
} from '../support/outbox-fixture.ts';

const fx = useLedgerFixture();
let connection: ChannelModel;
const cleanups: (() => Promise<void>)[] = [];
const relays: OutboxRelay[] = [];

beforeAll(async () => {
  connection = await openAmqp();
});
afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.stop();
  for (const cleanup of cleanups.splice(0)) await cleanup();
  // Every test starts with an empty outbox.
  await sql`truncate idempotency.outbox, idempotency.outbox_leases`.execute(fx.db);
});
afterAll(async () => {
  await connection?.close();
});

async function queue(label: string) {
  const recorded = await recordedQueue(connection, label);
  cleanups.push(recorded.remove);
  return recorded;
}

async function publisher() {
  const channel = await connection.createConfirmChannel();
  cleanups.push(() => channel.close());
  return amqpPublisher(channel);
}

/** Sessions of this database waiting on a lock. */
async function lockWaiters(): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock'`.execute(fx.db);
  return rows[0]?.n ?? 0;
}

function enqueue(stream: string, topic: string, payload: unknown = {}) {
  return fx.db.transaction().execute((trx) => enqueueMessage(trx, { stream, topic, payload }));
}

describe('createOutboxRelay', () => {
  it('publishes one stream in commit order, without gaps, while 8 producers commit 400 messages', async () => {
    const { queue: topic, delivered, waitFor } = await queue('order');
    const stream = uniqueKey('stream');
    const relay = createOutboxRelay(fx.db, { publish: await publisher(), pollIntervalMs: 5 });
    relays.push(relay);
    relay.start();
    const produced = await produce(fx.db, {
      producers: 8,
      perProducer: 50,
      topic,
      streamOf: () => stream,
    });
    await waitFor(400);
    expectStreamsInOrder(
      delivered.map((message) => message.messageId),
      produced,
    );
  });

  it('publishes a stream in the order its producers enqueued, even when the first producer is still open as the second tries to commit', async () => {
    const { queue: topic, delivered, waitFor } = await queue('held');
    const stream = uniqueKey('stream');
    const relay = createOutboxRelay(fx.db, { publish: await publisher() });
    // A enqueues first and holds its transaction open; B enqueues after it and commits.
    let commitA: () => void = () => undefined;
    const holdA = new Promise<void>((resolve) => {
      commitA = resolve;
    });
    let enqueuedA: (id: string) => void = () => undefined;
    const idA = new Promise<string>((resolve) => {
      enqueuedA = resolve;
    });
    const a = fx.db.transaction().execute(async (trx) => {
      enqueuedA((await enqueueMessage(trx, { stream, topic, payload: 'A' })).messageId);
      await holdA;
    });
    const first = await idA;
    let bCommitted = false;
    const b = fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic, payload: 'B' }))
      .then((message) => {
        bCommitted = true;
        return message.messageId;
      });
    // B either waits for A's counter lock, or (were positions not ordered by commit) committed.
    await expect
      .poll(async () => bCommitted || (await lockWaiters()) > 0, {
        message: 'B to wait for A, or to commit',
      })
      .toBe(true);
    await relay.relayOnce();
    commitA();
    await a;
    const second = await b;
    await relay.relayOnce();
    await waitFor(2);
    expect(delivered.map((message) => message.messageId)).toEqual([first, second]);
  });

  it('keeps each of 4 streams in order with 3 relays, never publishing a stream from two at once, each message once', async () => {
    const { queue: topic, delivered, waitFor } = await queue('streams');
    const streams = Array.from({ length: 4 }, () => uniqueKey('stream'));
    const intervals: PublishInterval[] = [];
    for (let r = 0; r < 3; r += 1) {
      const relay = createOutboxRelay(fx.db, {
        publish: timed(r, await publisher(), intervals),
        pollIntervalMs: 5,
        batchSize: 7,
        concurrency: 2,
      });
      relays.push(relay);
      relay.start();
    }
    const produced = await produce(fx.db, {
      producers: 8,
      perProducer: 50,
      topic,
      streamOf: (producer, i) => streams[(producer + i) % 4] as string,
    });
    await waitFor(400);
    for (const relay of relays.splice(0)) await relay.stop();

    const ids = delivered.map((message) => message.messageId);
    expect(ids).toHaveLength(400);
    expectStreamsInOrder(ids, produced);
    expect(intervals).toHaveLength(400);
    expectNoOverlap(intervals);
    // The work was shared: more than one relay published.
    expect(new Set(intervals.map((interval) => interval.relay)).size).toBeGreaterThan(1);
  });

  it('retries a failing publish with backoff, counting attempts, while the rest of its stream waits and other streams go on', async () => {
    const { queue: topic, delivered, waitFor } = await queue('retry');
    const real = await publisher();
    const [blocked, other] = [uniqueKey('blocked'), uniqueKey('other')];
    const first = await enqueue(blocked, topic, 'first');
    const second = await enqueue(blocked, topic, 'second');
    const free = await enqueue(other, topic, 'free');
    let failures = 3;
    const attempts: number[] = [];
    const delays: number[] = [];
    const errors: unknown[] = [];
    const relay = createOutboxRelay(fx.db, {
      publish: async (message) => {
        attempts.push(message.attempt);
        if (message.messageId === first.messageId && failures > 0) {
          failures -= 1;
          throw new Error('broker said no');
        }
        await real(message);
      },
      retryDelayMs: (attempt) => {
        delays.push(attempt);
        return 0;
      },
      onError: (error) => errors.push(error),
    });

    expect(await relay.relayOnce()).toEqual({ streams: 2, published: 1, failed: 1, parked: 0 });
    await waitFor(1);
    expect(delivered.map((message) => message.messageId)).toEqual([free.messageId]);
    const [status] = await outboxStatus(fx.db);
    expect(status).toMatchObject({
      stream: blocked,
      pending: 2,
      state: 'failing',
      headAttempts: 1,
      lastError: 'Error: broker said no',
    });

    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(await relay.relayOnce()).toMatchObject({ published: 2, failed: 0 });
    await waitFor(3);
    expect(delivered.map((message) => message.messageId)).toEqual([
      free.messageId,
      first.messageId,
      second.messageId,
    ]);
    expect(delays).toEqual([1, 2, 3]);
    expect(errors).toHaveLength(3);
    // The head was attempted 4 times, the one behind it once, after the head went through.
    expect(attempts.sort()).toEqual([1, 1, 1, 2, 3, 4]);
    expect(await outboxStatus(fx.db)).toEqual([]);
  });

  it('does not publish a failed message again before its backoff is over', async () => {
    const { queue: topic } = await queue('backoff');
    const stream = uniqueKey('stream');
    await enqueue(stream, topic);
    let calls = 0;
    const relay = createOutboxRelay(fx.db, {
      publish: async () => {
        calls += 1;
        throw new Error('down');
      },
      retryDelayMs: () => 3_600_000,
    });
    expect(await relay.relayOnce()).toMatchObject({ failed: 1 });
    expect(await relay.relayOnce()).toEqual({ streams: 0, published: 0, failed: 0, parked: 0 });
    expect(calls).toBe(1);
  });

  it('parks a message after maxAttempts, blocking its stream until it is released', async () => {
    const { queue: topic, delivered, waitFor } = await queue('park');
    const real = await publisher();
    const stream = uniqueKey('stream');
    const head = await enqueue(stream, topic, 'head');
    const next = await enqueue(stream, topic, 'next');
    let broken = true;
    const relay = createOutboxRelay(fx.db, {
      publish: async (message) => {
        if (broken) throw new Error('NOT_FOUND - no exchange');
        await real(message);
      },
      retryDelayMs: () => 0,
      maxAttempts: 2,
    });
    expect(await relay.relayOnce()).toMatchObject({ failed: 1, parked: 0 });
    expect(await relay.relayOnce()).toMatchObject({ failed: 1, parked: 1 });
    expect(await relay.relayOnce()).toEqual({ streams: 0, published: 0, failed: 0, parked: 0 });
    expect(await outboxStatus(fx.db)).toEqual([
      expect.objectContaining({ stream, pending: 2, state: 'parked', headAttempts: 2 }),
    ]);

    broken = false;
    expect(await releaseParkedMessage(fx.db, { stream })).toBe(true);
    expect(await relay.relayOnce()).toMatchObject({ published: 2 });
    await waitFor(2);
    expect(delivered.map((message) => message.messageId)).toEqual([head.messageId, next.messageId]);
    expect(await releaseParkedMessage(fx.db, { stream })).toBe(false);
  });

  it('stop() waits for the publish in flight, which is then recorded', async () => {
    const stream = uniqueKey('stream');
    await enqueue(stream, 't');
    let release: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      const relay = createOutboxRelay(fx.db, {
        publish: (message: OutboxMessage) => {
          resolve();
          return new Promise<void>((done) => {
            release = () => done();
            void message;
          });
        },
      });
      relays.push(relay);
      relay.start();
    });
    await started;
    const relay = relays.pop() as OutboxRelay;
    let stopped = false;
    const stopping = relay.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(await outboxStatus(fx.db)).toEqual([]);
  });

  it("deletes an emptied stream's counter, but not one a producer holds", async () => {
    const stream = uniqueKey('stream');
    const counter = async () => {
      const { rows } = await sql<{ last_position: string }>`
        select last_position from idempotency.outbox_streams where stream = ${stream}`.execute(
        fx.db,
      );
      return rows.map((row) => Number(row.last_position));
    };
    await enqueue(stream, 't', 1);
    await enqueue(stream, 't', 2);
    const relay = createOutboxRelay(fx.db, { publish: async () => undefined });

    // A producer's enqueue in flight holds the counter (3): the relay publishes 1 and 2 without
    // waiting for it, and keeps the counter.
    let commit: () => void = () => undefined;
    const committing = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let enqueued: (position: number) => void = () => undefined;
    const inFlight = new Promise<number>((resolve) => {
      enqueued = resolve;
    });
    const producer = fx.db.transaction().execute(async (trx) => {
      const { position } = await enqueueMessage(trx, { stream, topic: 't', payload: 3 });
      enqueued(position);
      await committing;
    });
    expect(await inFlight).toBe(3);
    expect(await relay.relayOnce()).toMatchObject({ published: 2 });
    commit();
    await producer;
    expect(await counter()).toEqual([3]);

    // Emptied, with no producer: the counter goes, and the stream starts again at 1.
    expect(await relay.relayOnce()).toMatchObject({ published: 1 });
    expect(await counter()).toEqual([]);
    expect((await enqueue(stream, 't', 4)).position).toBe(1);
  });

  it('holds no lock a producer waits for while a publish is in flight', async () => {
    const stream = uniqueKey('stream');
    await enqueue(stream, 't', 'first');
    let inFlight: () => void = () => undefined;
    const publishing = new Promise<void>((resolve) => {
      inFlight = resolve;
    });
    let confirm: () => void = () => undefined;
    const relay = createOutboxRelay(fx.db, {
      publish: () => {
        inFlight();
        return new Promise<void>((resolve) => {
          confirm = resolve;
        });
      },
    });
    const pass = relay.relayOnce();
    await publishing;
    // A producer of the same stream commits while the broker has not confirmed: with a lock
    // timeout, so that a lock held by the relay fails the test instead of hanging it.
    const second = await fx.db.transaction().execute(async (trx) => {
      await sql`set local lock_timeout = '5s'`.execute(trx);
      return enqueueMessage(trx, { stream, topic: 't', payload: 'second' });
    });
    expect(second.position).toBe(2);
    confirm();
    expect(await pass).toMatchObject({ published: 1 });
  });

  it('reports a failing pass to onError without a message, and keeps polling', async () => {
    const failures: [unknown, OutboxMessage | undefined][] = [];
    const controller = new AbortController();
    const relay = createOutboxRelay(fx.db, {
      publish: async () => undefined,
      schema: 'no_outbox_here',
      pollIntervalMs: 5,
      signal: controller.signal,
      onError: (error, message) => failures.push([error, message]),
    });
    relay.start();
    await expect
      .poll(() => failures.length, { message: 'two failed passes reported' })
      .toBeGreaterThanOrEqual(2);
    // The signal stops it as stop() does: stop() then only waits for the loop to end.
    controller.abort();
    await relay.stop();
    expect(failures[0]?.[1]).toBeUndefined();
    expect(String(failures[0]?.[0])).toMatch(/no_outbox_here/);
  });

  it('counts a publish that does not settle within publishTimeoutMs as failed, and keeps the message', async () => {
    const stream = uniqueKey('stream');
    await enqueue(stream, 't');
    const relay = createOutboxRelay(fx.db, {
      publish: () => new Promise<void>(() => undefined),
      publishTimeoutMs: 50,
      retryDelayMs: () => 3_600_000,
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 0, failed: 1 });
    expect(await outboxStatus(fx.db)).toEqual([
      expect.objectContaining({
        stream,
        state: 'failing',
        lastError: 'Error: publish did not settle within 50 ms',
      }),
    ]);
  });

  it('leaves synchronous_commit as it found it on the connection its deletes used', async () => {
    // One connection: the relay's statements and the check after them share it.
    const pool = new pg.Pool({ connectionString: fx.url, max: 1 });
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    try {
      const stream = uniqueKey('stream');
      for (let i = 0; i < 3; i++) await enqueue(stream, 't');
      const relay = createOutboxRelay(db, { publish: async () => undefined });
      expect((await relay.relayOnce()).published).toBe(3);
      await relay.stop();
      const { rows } = await sql<{ value: string }>`
        select current_setting('synchronous_commit') as value`.execute(db);
      expect(rows[0]?.value).toBe('on');
    } finally {
      await db.destroy();
    }
  });

  it('publishes nothing when its signal was aborted before it started', async () => {
    await enqueue(uniqueKey('stream'), 't');
    let calls = 0;
    const relay = createOutboxRelay(fx.db, {
      publish: async () => {
        calls += 1;
      },
      signal: AbortSignal.abort(),
    });
    relay.start();
    expect(await relay.relayOnce()).toEqual({ streams: 0, published: 0, failed: 0, parked: 0 });
    await relay.stop();
    expect(calls).toBe(0);
  });

  it('refuses invalid options with an InvalidIdempotencyOptionsError', () => {
    expect(() => createOutboxRelay(fx.db, { publish: 'no' as never })).toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(() =>
      createOutboxRelay(fx.db, { publish: async () => undefined, batchSize: 0 }),
    ).toThrow(/batchSize/);
    expect(() => createOutboxRelay(fx.db, { publish: async () => undefined, leaseMs: 10 })).toThrow(
      /leaseMs/,
    );
  });
});
