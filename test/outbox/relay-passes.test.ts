// How passes pick streams: round the streams from where the previous pass stopped, past any
// number of blocked ones, leaving no lease rows behind for emptied streams.
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createOutboxRelay, enqueueMessage, type OutboxMessage } from '../../src/outbox/index.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();

afterEach(async () => {
  await sql`truncate idempotency.outbox, idempotency.outbox_streams, idempotency.outbox_leases`.execute(
    fx.db,
  );
});

function enqueue(stream: string, payload: unknown = {}) {
  return fx.db.transaction().execute((trx) => enqueueMessage(trx, { stream, topic: 't', payload }));
}

async function leaseRows(): Promise<{ stream: string; live: boolean }[]> {
  const { rows } = await sql<{ stream: string; live: boolean }>`
    select stream, expires_at > now() as live from idempotency.outbox_leases
     order by stream`.execute(fx.db);
  return rows;
}

describe('relay passes', () => {
  it('goes round the streams: a pass takes those after the previous pass, then the first ones again', async () => {
    const prefix = uniqueKey('round');
    const streams = Array.from({ length: 6 }, (_, i) => `${prefix}-${i}`);
    for (const stream of streams) await enqueue(stream);
    const published: string[] = [];
    // concurrency 1: a pass takes 4 streams at most.
    const relay = createOutboxRelay(fx.db, {
      publish: async (message: OutboxMessage) => {
        published.push(message.stream);
      },
      concurrency: 1,
    });
    expect(await relay.relayOnce()).toMatchObject({ streams: 4, published: 4 });
    expect(published).toEqual(streams.slice(0, 4));
    await enqueue(streams[0] as string);
    expect(await relay.relayOnce()).toMatchObject({ streams: 3, published: 3 });
    expect(published.slice(4)).toEqual([streams[4], streams[5], streams[0]]);
    expect(await relay.relayOnce()).toMatchObject({ streams: 0 });
  });

  it('finds a due stream behind more than a thousand blocked ones', async () => {
    // 1500 streams whose head is parked, all named before the due one.
    await sql`
      insert into idempotency.outbox (stream, position, topic, payload, parked_at)
      select 'blocked-' || lpad(i::text, 4, '0'), 1, 't', '{}', now()
        from generate_series(1, 1500) i`.execute(fx.db);
    const due = await enqueue('due');
    const published: string[] = [];
    const relay = createOutboxRelay(fx.db, {
      publish: async (message: OutboxMessage) => {
        published.push(message.messageId);
      },
    });
    expect(await relay.relayOnce()).toMatchObject({ streams: 1, published: 1 });
    expect(published).toEqual([due.messageId]);
  });

  it('keeps the lease row of a stream it did not empty, expired, and leaves none for an emptied one', async () => {
    const [kept, emptied] = [uniqueKey('kept'), uniqueKey('emptied')];
    await enqueue(kept);
    await enqueue(kept);
    await enqueue(emptied);
    const relay = createOutboxRelay(fx.db, { publish: async () => undefined, batchSize: 1 });
    expect(await relay.relayOnce()).toMatchObject({ streams: 2, published: 2 });
    expect(await leaseRows()).toEqual([{ stream: kept, live: false }]);
    expect(await relay.relayOnce()).toMatchObject({ streams: 1, published: 1 });
    expect(await leaseRows()).toEqual([]);
  });
});
