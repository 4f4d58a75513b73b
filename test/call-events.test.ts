/**
 * The events withIdempotency publishes on node:diagnostics_channel, as a subscriber sees them:
 * one per call, with its outcome, timings and a keyed hash of the key, never the key itself
 * unless the application opts in.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHmac } from 'node:crypto';
import { tracingChannel } from 'node:diagnostics_channel';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  configureKeyPrivacy,
  hashIdempotencyKey,
  InvalidIdempotencyOptionsError,
  ReplayCache,
  WITH_IDEMPOTENCY_CHANNEL,
  type WithIdempotencyEvent,
  withIdempotency,
} from '../src/index.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();
// The store the context test binds is the event itself, standing for a span opened at start.
const channel = tracingChannel<WithIdempotencyEvent, WithIdempotencyEvent>(
  WITH_IDEMPOTENCY_CHANNEL,
);

/** Every event the channel published, by kind, while the test ran. */
let seen: { kind: string; event: WithIdempotencyEvent }[] = [];
const subscribers = {
  start: (event: WithIdempotencyEvent) => seen.push({ kind: 'start', event }),
  end: (event: WithIdempotencyEvent) => seen.push({ kind: 'end', event }),
  asyncStart: (event: WithIdempotencyEvent) => seen.push({ kind: 'asyncStart', event }),
  asyncEnd: (event: WithIdempotencyEvent) => seen.push({ kind: 'asyncEnd', event }),
  error: (event: WithIdempotencyEvent) => seen.push({ kind: 'error', event }),
};
beforeEach(() => {
  seen = [];
  channel.subscribe(subscribers);
});
afterEach(() => {
  channel.unsubscribe(subscribers);
  configureKeyPrivacy({ includeRawKeys: false });
});

/** The one call's event, after checking that it was traced from start to asyncEnd. */
function onlyEvent(): WithIdempotencyEvent {
  const events = new Set(seen.map(({ event }) => event));
  expect(events.size).toBe(1);
  expect(seen.map(({ kind }) => kind)).toContain('start');
  expect(seen.map(({ kind }) => kind)).toContain('asyncEnd');
  return [...events][0] as WithIdempotencyEvent;
}

/** Sessions of this database waiting on a lock in claim_key: a duplicate at its claim. */
async function waitingClaims(db: typeof fx.db): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity
     where wait_event_type = 'Lock' and query like '%claim_key%'
       and datname = current_database() and pid <> pg_backend_pid()`.execute(db);
  return rows[0]?.n ?? 0;
}

/** The event as telemetry would carry it: everything but Node's result and error. */
function exported(event: WithIdempotencyEvent): string {
  const { result: _result, error: _error, ...rest } = event;
  return JSON.stringify(rest);
}

describe('withIdempotency events', () => {
  it('tells an execution, with its timings and a keyed hash instead of the key', async () => {
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    const event = onlyEvent();
    expect(event).toMatchObject({
      version: 1,
      scope: 's',
      keyHash: hashIdempotencyKey(key),
      transaction: 'library',
      outcome: 'executed',
      attempts: 1,
    });
    for (const field of ['claimMs', 'fnMs', 'recordMs', 'durationMs'] as const) {
      expect(event[field]).toBeGreaterThanOrEqual(0);
    }
    expect(event.durationMs).toBeGreaterThanOrEqual(event.fnMs ?? Number.POSITIVE_INFINITY);
    expect(event.key).toBeUndefined();
    expect(exported(event)).not.toContain(key);
    // Hashed when first read, and still part of the event when a subscriber serialises it.
    expect(JSON.parse(exported(event)).keyHash).toBe(hashIdempotencyKey(key));
  });

  it('tells a replay from the ledger and one from the ReplayCache', async () => {
    const key = uniqueKey();
    const replayCache = new ReplayCache();
    await withIdempotency(fx.db, { scope: 's', key, replayCache }, createPayment('s', key));
    seen = [];
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(onlyEvent()).toMatchObject({ outcome: 'replayed', replayedFrom: 'ledger', attempts: 0 });
    seen = [];
    await withIdempotency(fx.db, { scope: 's', key, replayCache }, createPayment('s', key));
    expect(onlyEvent()).toMatchObject({ outcome: 'replayed', replayedFrom: 'replay_cache' });
  });

  it('tells a conflict with its reason, on the error channel too', async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    seen = [];
    const call = withIdempotency(fx.db, { scope: 's', key, onConcurrent: 'reject' }, async () => 0);
    await expect(call).rejects.toMatchObject({ status: 409 });
    const event = onlyEvent();
    expect(event).toMatchObject({ outcome: 'conflict', conflictReason: 'in_flight' });
    expect(seen.filter(({ kind }) => kind === 'error')).toHaveLength(1);
    release();
    await first;
  });

  it('tells a replay a duplicate in flight decided, and a key new again because it expired', async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    seen = [];
    const waiting = withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    // The duplicate passed its lookup and waits at its claim for the first call's transaction.
    await expect.poll(() => waitingClaims(fx.db), { timeout: 10_000 }).toBeGreaterThan(0);
    release();
    await first;
    expect((await waiting).replayed).toBe(true);
    // Two calls ended meanwhile: the first (executed, found the key free) and the duplicate.
    const ended = seen.filter(({ kind }) => kind === 'asyncEnd').map(({ event }) => event);
    expect(ended).toHaveLength(2);
    expect(ended.find((event) => event.outcome === 'executed')?.metInFlight).toBe(false);
    expect(ended.find((event) => event.outcome === 'replayed')).toMatchObject({
      metInFlight: true,
      expiredEntry: false,
    });
    expect(await fx.countPayments(key)).toBe(1);

    await sql`
      update idempotency.ledger set expires_at = statement_timestamp() - interval '1 second'
       where key = ${key}`.execute(fx.db);
    seen = [];
    const again = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(again.replayed).toBe(false);
    expect(onlyEvent()).toMatchObject({
      outcome: 'executed',
      expiredEntry: true,
      metInFlight: false,
    });
    expect(await fx.countPayments(key)).toBe(2);

    seen = [];
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    // A replay found by the lookup: no claim, nothing in flight.
    expect(onlyEvent()).toMatchObject({ outcome: 'replayed', expiredEntry: false });
    expect(onlyEvent().metInFlight).toBeUndefined();
  });

  it('tells a reused key, an invalid call and a failed fn apart', async () => {
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key, request: { a: 1 } }, createPayment('s', key));
    seen = [];
    await expect(
      withIdempotency(fx.db, { scope: 's', key, request: { a: 2 } }, createPayment('s', key)),
    ).rejects.toMatchObject({ status: 422 });
    expect(onlyEvent()).toMatchObject({ outcome: 'key_reused', replayedFrom: 'ledger' });

    seen = [];
    const badKey = 'x'.repeat(300);
    await expect(
      withIdempotency(fx.db, { scope: 's', key: badKey }, async () => 0),
    ).rejects.toMatchObject({ status: 400 });
    // Nothing about an invalid call is described: its scope and key may be anything.
    const invalid = onlyEvent();
    expect(invalid).toMatchObject({ outcome: 'invalid_key', attempts: 0 });
    expect(invalid.keyHash).toBeUndefined();
    expect(invalid.scope).toBeUndefined();

    seen = [];
    await expect(
      withIdempotency(fx.db, { scope: 's', key, ttl: 5 } as never, async () => 0),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(onlyEvent()).toMatchObject({ outcome: 'invalid_options' });

    seen = [];
    const failing = uniqueKey();
    await expect(
      withIdempotency(fx.db, { scope: 's', key: failing }, async () => {
        throw new Error('declined');
      }),
    ).rejects.toThrow('declined');
    expect(onlyEvent()).toMatchObject({ outcome: 'failed', attempts: 1 });
  });

  it("tells the caller's transaction and 'optimistic' apart", async () => {
    const key = uniqueKey();
    await fx.db
      .transaction()
      .execute((trx) => withIdempotency(trx, { scope: 's', key }, createPayment('s', key)));
    expect(onlyEvent()).toMatchObject({ transaction: 'caller', outcome: 'executed', attempts: 0 });

    seen = [];
    const other = uniqueKey();
    await withIdempotency(
      fx.db,
      { scope: 's', key: other, onConcurrent: 'optimistic' },
      createPayment('s', other),
    );
    const event = onlyEvent();
    expect(event).toMatchObject({ onConcurrent: 'optimistic', outcome: 'executed' });
    expect(event.claimMs).toBeUndefined();
    expect(event.recordMs).toBeGreaterThanOrEqual(0);
  });

  it('times a fn that returns a plain value, as a JavaScript caller may write it', async () => {
    const key = uniqueKey();
    const plain = (() => ({ ok: true })) as unknown as () => Promise<{ ok: boolean }>;
    const { response } = await withIdempotency(fx.db, { scope: 's', key }, plain);
    expect(response).toEqual({ ok: true });
    expect(onlyEvent()).toMatchObject({ outcome: 'executed', onConcurrent: 'wait' });
    expect(onlyEvent().fnMs).toBeGreaterThanOrEqual(0);
  });

  it('runs fn inside the context a subscriber binds to the start of the call', async () => {
    const storage = new AsyncLocalStorage<WithIdempotencyEvent>();
    channel.start.bindStore(storage, (event) => event);
    try {
      const key = uniqueKey();
      const { response } = await withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
        await sql`select 1`.execute(trx);
        // Described by now: the options were validated before fn ran.
        return storage.getStore()?.keyHash;
      });
      expect(response).toBe(hashIdempotencyKey(key));
    } finally {
      channel.start.unbindStore(storage);
    }
  });

  it('carries the raw key only when the application opts in', async () => {
    configureKeyPrivacy({ includeRawKeys: true });
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(onlyEvent()).toMatchObject({ key, keyHash: hashIdempotencyKey(key) });
  });
});

describe('configureKeyPrivacy', () => {
  it('hashes keys with the secret it is given', () => {
    const secret = 'a secret of 24 bytes....';
    configureKeyPrivacy({ keyHashSecret: secret });
    const expected = createHmac('sha256', secret).update('k-1').digest('hex').slice(0, 32);
    expect(hashIdempotencyKey('k-1')).toBe(expected);
    expect(hashIdempotencyKey('k-2')).not.toBe(expected);
  });

  it('refuses a short secret and unknown options, and keeps the secret it had', () => {
    configureKeyPrivacy({ keyHashSecret: 'the secret before, 16+' });
    const before = hashIdempotencyKey('k');
    expect(() => configureKeyPrivacy({ keyHashSecret: 'short' })).toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(() => configureKeyPrivacy({ rawKeys: true } as never)).toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(hashIdempotencyKey('k')).toBe(before);
  });
});
