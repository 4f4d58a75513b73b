import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  ReplayCache,
  withIdempotency,
} from '../src/index.ts';
import {
  createLedgerFixture,
  createPayment,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** A payment under `key` in scope 's', through `replayCache` when one is given. */
function pay(key: string, options: { replayCache?: ReplayCache; ttlMs?: number } = {}) {
  return withIdempotency(fx.db, { scope: 's', key, ...options }, createPayment('s', key));
}

/** Deletes the ledger entry behind the library's back: only a cache can still replay it. */
async function deleteEntry(key: string) {
  await sql`delete from idempotency.ledger where key = ${key}`.execute(fx.db);
}

describe('ReplayCache', () => {
  it('replays in this process without reading the ledger, after an execution or a lookup', async () => {
    const replayCache = new ReplayCache();
    const executed = uniqueKey();
    const first = await pay(executed, { replayCache });
    await deleteEntry(executed);
    const replay = await pay(executed, { replayCache });
    expect(replay).toEqual({ response: first.response, replayed: true });
    expect(await fx.countPayments(executed)).toBe(1);

    // An entry written by another process is cached when a replay reads it.
    const looked = uniqueKey();
    const other = await pay(looked);
    await pay(looked, { replayCache });
    await deleteEntry(looked);
    const cached = await pay(looked, { replayCache });
    expect(cached).toEqual({ response: other.response, replayed: true });
  });

  it('checks the request fingerprint and the scope of a cached entry', async () => {
    const replayCache = new ReplayCache();
    const key = uniqueKey();
    await withIdempotency(
      fx.db,
      { scope: 'tenant-a', key, request: { amount: 1 }, replayCache },
      createPayment('tenant-a', key),
    );
    await expect(
      withIdempotency(
        fx.db,
        { scope: 'tenant-a', key, request: { amount: 2 }, replayCache },
        createPayment('tenant-a', key),
      ),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    const otherScope = await withIdempotency(
      fx.db,
      { scope: 'tenant-b', key, request: { amount: 1 }, replayCache },
      createPayment('tenant-b', key),
    );
    expect(otherScope.replayed).toBe(false);
  });

  it('stops replaying once the entry has expired by the database clock', async () => {
    const replayCache = new ReplayCache();
    const key = uniqueKey();
    const first = await pay(key, { ttlMs: 200, replayCache });
    const paidAtMs = performance.now();
    // Wait until the entry has expired by the database clock, and 200 ms have passed on this
    // process's monotonic clock too, which the cache counts on: the two can disagree when the
    // machine's wall clock is stepped (a VM's time sync), and the cache forgets no earlier than
    // its own clock says.
    const expired = async () => {
      const { rows } = await sql<{ expired: boolean }>`
        select clock_timestamp() >= expires_at as expired
          from idempotency.ledger where key = ${key}`.execute(fx.db);
      return rows[0]?.expired === true && performance.now() - paidAtMs >= 200;
    };
    await expect
      .poll(expired, {
        timeout: 10_000,
        interval: 20,
        message: 'the entry (ttlMs 200) to expire by the database clock',
      })
      .toBe(true);
    const again = await pay(key, { replayCache });
    expect(again.replayed).toBe(false);
    expect(again.response).not.toEqual(first.response);
    expect(await fx.countPayments(key)).toBe(2);
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    const replayCache = new ReplayCache({ maxEntries: 2 });
    const [a, b, c] = [uniqueKey(), uniqueKey(), uniqueKey()];
    for (const key of [a, b]) {
      await pay(key, { replayCache });
    }
    // Using a makes b the least recently used, so c pushes b out.
    await pay(a, { replayCache });
    await pay(c, { replayCache });
    expect(replayCache.size).toBe(2);
    for (const key of [a, b, c]) await deleteEntry(key);
    const replays = await Promise.all([a, b, c].map((key) => pay(key, { replayCache })));
    expect(replays.map((r) => r.replayed)).toEqual([true, false, true]);
  });

  it("never replays one database's entry for a call on another database", async () => {
    // Two shards: the same scope and key on each are two operations.
    const shard = await createLedgerFixture();
    try {
      const replayCache = new ReplayCache();
      const key = uniqueKey();
      const onA = await pay(key, { replayCache });
      const onB = await withIdempotency(
        shard.db,
        { scope: 's', key, replayCache },
        createPayment('s', key),
      );
      expect(onB.replayed).toBe(false);
      expect(onB.response).not.toEqual(onA.response);
      expect(await shard.countPayments(key)).toBe(1);
      // Each database's entry still replays from the cache for that database.
      await deleteEntry(key);
      expect(await pay(key, { replayCache })).toEqual({ response: onA.response, replayed: true });
    } finally {
      await shard.drop();
    }
  });

  it('refuses invalid options', () => {
    expect(() => new ReplayCache({ maxEntries: 0 })).toThrow(InvalidIdempotencyOptionsError);
  });
});
