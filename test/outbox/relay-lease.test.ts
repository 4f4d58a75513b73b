// The relay's leases under pauses: a relay (or a pass) that outlived its lease, or two passes of
// one relay at once, never publish a stream behind its current holder, nor reset its counter.
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import {
  createOutboxRelay,
  enqueueMessage,
  type OutboxMessage,
  type OutboxRelay,
} from '../../src/outbox/index.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { holdResults } from './held-results.ts';

const fx = useLedgerFixture();
const relays: OutboxRelay[] = [];

afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.stop();
  await sql`truncate idempotency.outbox, idempotency.outbox_leases`.execute(fx.db);
});

function enqueue(stream: string, payload: unknown = {}) {
  return fx.db.transaction().execute((trx) => enqueueMessage(trx, { stream, topic: 't', payload }));
}

async function counter(stream: string): Promise<number[]> {
  const { rows } = await sql<{ last_position: string }>`
    select last_position from idempotency.outbox_streams where stream = ${stream}`.execute(fx.db);
  return rows.map((row) => Number(row.last_position));
}

/** A publish that confirms at once, noting each message it was given in order. */
function recording(published: string[]) {
  return async (message: OutboxMessage) => {
    published.push(message.messageId);
  };
}

/** Relays until `published` holds `count` messages: each pass runs once the lease allows it. */
async function relayUntil(relay: OutboxRelay, published: string[], count: number) {
  await expect
    .poll(async () => (await relay.relayOnce()) && published.length, {
      timeout: 10_000,
      interval: 20,
      message: `${count} messages published`,
    })
    .toBeGreaterThanOrEqual(count);
}

describe('relay leases', () => {
  it('never publishes one stream from two passes of one relay at once', async () => {
    const stream = uniqueKey('stream');
    const ids = [(await enqueue(stream)).messageId, (await enqueue(stream)).messageId];
    // Both passes find the stream due before either takes it.
    const bothFound = deferred();
    const db = fx.db.withPlugin(
      holdResults('with recursive heads', async (count) => {
        if (count === 2) bothFound.resolve();
        await bothFound.promise;
      }),
    );
    const published: string[] = [];
    let inFlight = 0;
    let mostInFlight = 0;
    const secondPublish = deferred();
    const firstPassEnded = deferred();
    const relay = createOutboxRelay(db, {
      publish: async (message) => {
        published.push(message.messageId);
        inFlight += 1;
        mostInFlight = Math.max(mostInFlight, inFlight);
        if (inFlight > 1) secondPublish.resolve();
        // Confirmed once a second publish overlaps it, or once the other pass is over.
        await Promise.race([secondPublish.promise, firstPassEnded.promise]);
        inFlight -= 1;
      },
    });
    const passes = [relay.relayOnce(), relay.relayOnce()];
    void Promise.race(passes).then(() => firstPassEnded.resolve());
    const results = await Promise.all(passes);
    expect(mostInFlight).toBe(1);
    expect(published).toEqual(ids);
    expect(results.map((result) => result.published).sort()).toEqual([0, 2]);
  });

  it('does not publish a message read before it outlived its lease, once another relay took the stream', async () => {
    const stream = uniqueKey('stream');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await enqueue(stream, i)).messageId);
    // Relay A stalls after reading the stream, past its lease.
    const readHeld = deferred();
    const resume = deferred();
    const stalled = fx.db.withPlugin(
      holdResults('as due', async () => {
        readHeld.resolve();
        await resume.promise;
      }),
    );
    const published: string[] = [];
    const a = createOutboxRelay(stalled, {
      publish: recording(published),
      leaseMs: 200,
      publishTimeoutMs: 100,
    });
    const b = createOutboxRelay(fx.db, { publish: recording(published) });
    const stalledPass = a.relayOnce();
    await readHeld.promise;
    await relayUntil(b, published, 3);
    resume.resolve();
    expect(await stalledPass).toMatchObject({ published: 0 });
    expect(published).toEqual(ids);
  });

  it('keeps the counter of a stream reused after the relay that emptied it outlived its lease', async () => {
    const stream = uniqueKey('stream');
    await enqueue(stream, 1);
    await enqueue(stream, 2);
    // Relay A stalls after deleting position 2, the last message, before it deletes the counter.
    const deleteHeld = deferred();
    const resume = deferred();
    const stalled = fx.db.withPlugin(
      holdResults('no_flush_wait', async (count) => {
        if (count < 2) return;
        deleteHeld.resolve();
        await resume.promise;
      }),
    );
    const published: string[] = [];
    const a = createOutboxRelay(stalled, {
      publish: recording(published),
      leaseMs: 200,
      publishTimeoutMs: 100,
    });
    const stalledPass = a.relayOnce();
    await deleteHeld.promise;
    // Once A's lease ran out, relay B publishes 3, empties the stream and deletes its counter.
    await enqueue(stream, 3);
    const b = createOutboxRelay(fx.db, { publish: recording(published) });
    await relayUntil(b, published, 3);
    expect(await counter(stream)).toEqual([]);
    // The stream is used again (1, 2) while A, waking up, still believes it emptied it at 2.
    expect((await enqueue(stream, 4)).position).toBe(1);
    expect((await enqueue(stream, 5)).position).toBe(2);
    resume.resolve();
    await stalledPass;
    expect(await counter(stream)).toEqual([2]);
    expect((await enqueue(stream, 6)).position).toBe(3);
  });

  it('deletes the counter of a stream emptied by a full batch', async () => {
    const stream = uniqueKey('stream');
    await enqueue(stream, 1);
    await enqueue(stream, 2);
    const relay = createOutboxRelay(fx.db, { publish: async () => undefined, batchSize: 2 });
    expect(await relay.relayOnce()).toMatchObject({ published: 2 });
    expect(await relay.relayOnce()).toMatchObject({ published: 0 });
    expect(await counter(stream)).toEqual([]);
  });

  it('renews its lease before a publish it might outlast, and publishes the whole batch', async () => {
    const stream = uniqueKey('stream');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await enqueue(stream, i)).messageId);
    const leaseLeftMs = async () => {
      const { rows } = await sql<{ ms: number }>`
        select (extract(epoch from expires_at - clock_timestamp()) * 1000)::float8 as ms
          from idempotency.outbox_leases where stream = ${stream}`.execute(fx.db);
      return rows[0]?.ms ?? 0;
    };
    const published: string[] = [];
    const relay = createOutboxRelay(fx.db, {
      // Each publish takes 600 ms of the lease (of 2000): the third would outlast it unrenewed.
      publish: async (message) => {
        const leftMs = await leaseLeftMs();
        await expect
          .poll(leaseLeftMs, { timeout: 5000, interval: 10, message: '600 ms of the lease used' })
          .toBeLessThan(leftMs - 600);
        published.push(message.messageId);
      },
      leaseMs: 2000,
      publishTimeoutMs: 1000,
    });
    expect(await relay.relayOnce()).toMatchObject({ published: 3 });
    expect(published).toEqual(ids);
  });

  it('refuses a publishTimeoutMs longer than half of leaseMs', () => {
    const publish = async () => undefined;
    expect(() => createOutboxRelay(fx.db, { publish, leaseMs: 100, publishTimeoutMs: 99 })).toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(() => createOutboxRelay(fx.db, { publish, leaseMs: 100, publishTimeoutMs: 51 })).toThrow(
      /publishTimeoutMs/,
    );
    expect(() =>
      createOutboxRelay(fx.db, { publish, leaseMs: 100, publishTimeoutMs: 50 }),
    ).not.toThrow();
  });
});
