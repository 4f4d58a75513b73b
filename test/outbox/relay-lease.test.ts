// The relay's leases under pauses: a relay (or a pass) that outlived its lease, or two passes of
// one relay at once, never publish a stream behind its current holder, nor reset its counter.
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createOutboxRelay, enqueueMessage, type OutboxRelay } from '../../src/outbox/index.ts';
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
});
