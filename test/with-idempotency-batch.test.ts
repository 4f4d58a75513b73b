import { randomBytes } from 'node:crypto';
import { tracingChannel } from 'node:diagnostics_channel';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  type BatchItemResult,
  IdempotencyConflictError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  MAX_BATCH_ITEMS,
  responseEncryption,
  WITH_IDEMPOTENCY_BATCH_CHANNEL,
  WITH_IDEMPOTENCY_CHANNEL,
  type WithIdempotencyBatchEvent,
  withIdempotency,
  withIdempotencyBatch,
} from '../src/index.ts';
import { waitForLockWaiters } from './support/barrier.ts';
import {
  createPayment,
  type Database,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** A batch fn that writes one payment per pending item, and says which keys it was given. */
function payEach(scope: string, seen: string[] = []) {
  return async (trx: Kysely<Database>, pending: readonly { key: string }[]) => {
    const responses = [];
    for (const { key } of pending) {
      seen.push(key);
      responses.push(await createPayment(scope, key)(trx));
    }
    return responses;
  };
}

async function countLedger(keys: readonly string[]): Promise<number> {
  const { rows } = await sql<{ count: string }>`
    select count(*) as count from idempotency.ledger where key = any(${keys}::text[])`.execute(
    fx.db,
  );
  return Number(rows[0]?.count);
}

function toItem(key: string) {
  return { key };
}

function keys(count: number, label = 'batch'): string[] {
  return Array.from({ length: count }, () => uniqueKey(label));
}

describe('withIdempotencyBatch', () => {
  it('runs fn once for a batch of new keys, given in their order, and commits one payment per key', async () => {
    // Reversed, so that the order given is not the order the keys are claimed in.
    const batch = keys(20).reverse();
    const seen: string[] = [];
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      batch.map((key) => ({ key })),
      payEach('s', seen),
    );
    expect(results.map((result) => result.outcome)).toEqual(batch.map(() => 'executed'));
    expect(seen).toEqual(batch);
    for (const key of batch) expect(await fx.countPayments(key, 's')).toBe(1);
  });

  it('replays processed keys byte for byte and runs fn only for the new ones', async () => {
    const [old1, old2, new1, new2] = keys(4) as [string, string, string, string];
    const first1 = await withIdempotency(
      fx.db,
      { scope: 's', key: old1 },
      createPayment('s', old1),
    );
    const first2 = await withIdempotency(
      fx.db,
      { scope: 's', key: old2 },
      createPayment('s', old2),
    );
    const seen: string[] = [];
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      [new1, old1, new2, old2].map((key) => ({ key })),
      payEach('s', seen),
    );
    expect(seen.sort()).toEqual([new1, new2].sort());
    expect(results.map((result) => result.outcome)).toEqual([
      'executed',
      'replayed',
      'executed',
      'replayed',
    ]);
    expect(JSON.stringify(responseOf(results[1]))).toBe(JSON.stringify(first1.response));
    expect(JSON.stringify(responseOf(results[3]))).toBe(JSON.stringify(first2.response));
    // And the batch's own responses replay to a single call, byte for byte.
    const again = await withIdempotency(fx.db, { scope: 's', key: new2 }, createPayment('s', new2));
    expect(again.replayed).toBe(true);
    expect(JSON.stringify(again.response)).toBe(JSON.stringify(responseOf(results[2])));
    for (const key of [old1, old2, new1, new2]) expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses, per item, a key reused with another request, and processes the others', async () => {
    const [used, fresh] = keys(2) as [string, string];
    await withIdempotency(
      fx.db,
      { scope: 's', key: used, request: { amount: 1 } },
      createPayment('s', used),
    );
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      [
        { key: used, request: { amount: 2 } },
        { key: fresh, request: { amount: 2 } },
      ],
      payEach('s'),
    );
    expect(results[0]?.outcome).toBe('refused');
    const error = results[0]?.outcome === 'refused' ? results[0].error : undefined;
    expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
    expect(error?.key).toBe(used);
    expect(results[1]?.outcome).toBe('executed');
    expect(await fx.countPayments(used)).toBe(1);
    expect(await fx.countPayments(fresh)).toBe(1);
  });

  it('treats a key repeated inside the batch as one item: fn sees it once, the repeat replays', async () => {
    const [key, other] = keys(2) as [string, string];
    const seen: string[] = [];
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      [{ key, request: 'a' }, { key: other }, { key, request: 'a' }, { key, request: 'b' }],
      payEach('s', seen),
    );
    expect(seen.filter((seenKey) => seenKey === key)).toHaveLength(1);
    expect(results.map((result) => result.outcome)).toEqual([
      'executed',
      'executed',
      'replayed',
      'refused',
    ]);
    expect(responseOf(results[2])).toEqual(responseOf(results[0]));
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('lets overlapping batches that take their keys in different orders all finish, each key once', async () => {
    const shared = keys(40, 'overlap');
    const shuffled = (list: string[]) =>
      list
        .map((key) => ({ key, sort: Math.random() }))
        .sort((a, b) => a.sort - b.sort)
        .map(({ key }) => key);
    // Twelve batches at once, each over a random order of an overlapping subset of the keys.
    const batches = Array.from({ length: 12 }, (_, index) =>
      shuffled(index % 2 === 0 ? shared : [...shared].reverse().slice(0, 30)),
    );
    const results = await Promise.all(
      batches.map((batch) =>
        withIdempotencyBatch(
          fx.db,
          { scope: 'overlap', maxAttempts: 1 },
          batch.map((key) => ({ key })),
          payEach('overlap'),
        ),
      ),
    );
    const executed = results.flat().filter((result) => result.outcome === 'executed');
    expect(executed).toHaveLength(shared.length);
    for (const key of shared) expect(await fx.countPayments(key, 'overlap')).toBe(1);
  });

  it('does not deadlock when two batches hold one key each and need the other', async () => {
    // Given in opposite orders, x and y would be taken one by each batch, while each waits for a
    // key held elsewhere (h1, h2); released, each would then wait for the other. Sorted, both take
    // x before y.
    const [x, y, h1, h2] = [uniqueKey('x'), uniqueKey('y'), uniqueKey('h1'), uniqueKey('h2')];
    const held1 = await startHeldCall(fx.db, 's', h1);
    const held2 = await startHeldCall(fx.db, 's', h2);
    const options = { scope: 's', maxAttempts: 1 };
    const a = withIdempotencyBatch(fx.db, options, [x, h1, y].map(toItem), payEach('s'));
    const b = withIdempotencyBatch(fx.db, options, [y, h2, x].map(toItem), payEach('s'));
    await waitForLockWaiters(fx.db, 2);
    held1.release();
    held2.release();
    await Promise.all([held1.first, held2.first]);
    const [resultsA, resultsB] = await Promise.all([a, b]);
    const outcomes = [...resultsA, ...resultsB].map((result) => result.outcome);
    expect(outcomes.filter((outcome) => outcome === 'executed')).toHaveLength(2);
    for (const key of [x, y, h1, h2]) expect(await fx.countPayments(key)).toBe(1);
  });

  it('takes over an expired entry, as withIdempotency does, and runs fn for it again', async () => {
    const [expired, live] = keys(2) as [string, string];
    await withIdempotency(fx.db, { scope: 's', key: expired }, createPayment('s', expired));
    await withIdempotency(fx.db, { scope: 's', key: live }, createPayment('s', live));
    await sql`update idempotency.ledger set expires_at = now() - interval '1 second'
               where key = ${expired}`.execute(fx.db);
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      [{ key: expired }, { key: live }],
      payEach('s'),
    );
    expect(results.map((result) => result.outcome)).toEqual(['executed', 'replayed']);
    expect(await fx.countPayments(expired)).toBe(2);
    expect(await fx.countPayments(live)).toBe(1);
    expect(await countLedger([expired, live])).toBe(2);
  });

  it('waits for a call in flight with one of its keys, then replays what that call committed', async () => {
    const [held, fresh] = keys(2) as [string, string];
    const { first, release } = await startHeldCall(fx.db, 's', held);
    const batch = withIdempotencyBatch(
      fx.db,
      { scope: 's' },
      [{ key: fresh }, { key: held }],
      payEach('s'),
    );
    await waitForLockWaiters(fx.db, 1);
    release();
    const committed = await first;
    const results = await batch;
    expect(results.map((result) => result.outcome)).toEqual(['executed', 'replayed']);
    expect(JSON.stringify(responseOf(results[1]))).toBe(JSON.stringify(committed.response));
    expect(await fx.countPayments(held)).toBe(1);
    expect(await fx.countPayments(fresh)).toBe(1);
  });

  it('commits nothing of the batch when fn throws, and passes its error through', async () => {
    const batch = keys(5);
    const failure = new Error('business rule');
    await expect(
      withIdempotencyBatch(
        fx.db,
        { scope: 's' },
        batch.map((key) => ({ key })),
        async (trx, pending) => {
          await payEach('s')(trx, pending);
          throw failure;
        },
      ),
    ).rejects.toBe(failure);
    expect(await countLedger(batch)).toBe(0);
    for (const key of batch) expect(await fx.countPayments(key)).toBe(0);
  });

  it('refuses fn returning other than one response per pending item, committing nothing', async () => {
    const batch = keys(3);
    await expect(
      withIdempotencyBatch(
        fx.db,
        { scope: 's' },
        batch.map((key) => ({ key })),
        async (trx, pending) => (await payEach('s')(trx, pending)).slice(1),
      ),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(await countLedger(batch)).toBe(0);
    for (const key of batch) expect(await fx.countPayments(key)).toBe(0);
  });

  it('encrypts the stored responses, which replay to withIdempotency with the same encryption', async () => {
    const encryption = responseEncryption({ keys: [{ id: 'k', key: randomBytes(32) }] });
    const batch = keys(3);
    const results = await withIdempotencyBatch(
      fx.db,
      { scope: 's', encryption },
      batch.map((key) => ({ key })),
      payEach('s'),
    );
    const { rows } = await sql<{ response: string }>`
      select response::text as response from idempotency.ledger where key = ${batch[0]}`.execute(
      fx.db,
    );
    expect(rows[0]?.response).not.toContain('paymentId');
    const replay = await withIdempotency(
      fx.db,
      { scope: 's', key: batch[0] as string, encryption },
      createPayment('s', batch[0] as string),
    );
    expect(replay.replayed).toBe(true);
    expect(JSON.stringify(replay.response)).toBe(JSON.stringify(responseOf(results[0])));
    const again = await withIdempotencyBatch(
      fx.db,
      { scope: 's', encryption },
      batch.map((key) => ({ key })),
      payEach('s'),
    );
    expect(again.map(responseOf)).toEqual(results.map(responseOf));
  });

  it('refuses a nested call for one of its keys inside fn (the same transaction)', async () => {
    const [key] = keys(1) as [string];
    await expect(
      withIdempotencyBatch(fx.db, { scope: 's' }, [{ key }], async (trx) => [
        await withIdempotency(trx, { scope: 's', key }, createPayment('s', key)),
      ]),
    ).rejects.toMatchObject({ reason: 'same_transaction' });
    expect(await countLedger([key])).toBe(0);
  });

  it('times out as a conflict when a key stays held past waitTimeoutMs, committing nothing', async () => {
    const [held, free] = keys(2) as [string, string];
    let release = () => {};
    const holding = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered = () => {};
    const inside = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const first = withIdempotency(fx.db, { scope: 's', key: held }, async (trx) => {
      entered();
      await holding;
      return createPayment('s', held)(trx);
    });
    await inside;
    const error = await withIdempotencyBatch(
      fx.db,
      { scope: 's', waitTimeoutMs: 50 },
      [{ key: free }, { key: held }],
      payEach('s'),
    ).catch((caught: unknown) => caught);
    release();
    await first;
    expect(error).toBeInstanceOf(IdempotencyConflictError);
    expect(error).toMatchObject({ reason: 'wait_timeout' });
    expect(await countLedger([free])).toBe(0);
  });

  describe('bad input: a typed error, nothing written', () => {
    const run = (options: object, items: unknown) =>
      withIdempotencyBatch(
        fx.db,
        options as { scope: string },
        items as { key: string }[],
        payEach('s'),
      );

    it('refuses an empty batch and one larger than MAX_BATCH_ITEMS', async () => {
      await expect(run({ scope: 's' }, [])).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
      const tooMany = keys(MAX_BATCH_ITEMS + 1);
      await expect(
        run(
          { scope: 's' },
          tooMany.map((key) => ({ key })),
        ),
      ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
      expect(await countLedger(tooMany)).toBe(0);
    });

    it('refuses the whole batch for one invalid key, without naming it', async () => {
      const good = keys(2);
      const error = await run({ scope: 's' }, [
        { key: good[0] },
        { key: 'bad\nkey' },
        { key: good[1] },
      ]).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidIdempotencyKeyError);
      expect((error as Error).message).not.toContain('bad');
      expect(await countLedger(good)).toBe(0);
    });

    it('names the item and withIdempotencyBatch for a bad key or request, never the key', async () => {
      const good = keys(3) as [string, string, string];
      const refusal = (items: unknown) =>
        run({ scope: 's' }, items).catch((caught: unknown) => caught);
      const notJson = await refusal([{ key: good[0] }, { key: good[1], request: { n: 1n } }]);
      expect(notJson).toBeInstanceOf(InvalidIdempotencyOptionsError);
      expect((notJson as InvalidIdempotencyOptionsError).issues).toEqual([
        expect.stringMatching(/^items\.1\.request: /),
      ]);
      expect((notJson as Error).message).toMatch(/^Invalid withIdempotencyBatch items: items\.1\./);
      for (const [items, problem] of [
        [
          [{ key: good[0] }, { key: good[1] }, { key: 'bad\u00e9key' }],
          /items\.2\.key: .*printable/,
        ],
        [[{ key: good[0] }, {}], /items\.1\.key: An idempotency key is required/],
      ] as const) {
        const error = await refusal(items);
        expect(error).toBeInstanceOf(InvalidIdempotencyKeyError);
        expect((error as Error).message).toMatch(/^withIdempotencyBatch: /);
        expect((error as Error).message).toMatch(problem);
        expect((error as Error).message).not.toContain('bad');
      }
      expect(await countLedger(good)).toBe(0);
    });

    it('refuses the options a batch does not take, a transaction, and a non-JSON request', async () => {
      const [key] = keys(1) as [string];
      for (const options of [
        { scope: 's', onConcurrent: 'optimistic' },
        { scope: 's', onConcurrent: 'reject' },
        { scope: 's', key },
        { scope: 's', replayCache: {} },
        { scope: '' },
      ]) {
        await expect(run(options, [{ key }])).rejects.toBeInstanceOf(
          InvalidIdempotencyOptionsError,
        );
      }
      await expect(run({ scope: 's' }, [{ key, request: 1n }])).rejects.toBeInstanceOf(
        InvalidIdempotencyOptionsError,
      );
      await expect(
        fx.db
          .transaction()
          .execute((trx) => withIdempotencyBatch(trx, { scope: 's' }, [{ key }], payEach('s'))),
      ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
      expect(await countLedger([key])).toBe(0);
    });
  });

  it('publishes one batch event with counts and no key, and no withIdempotency event', async () => {
    const [processed, fresh] = keys(2) as [string, string];
    await withIdempotency(fx.db, { scope: 's', key: processed }, createPayment('s', processed));
    const batchEvents: WithIdempotencyBatchEvent[] = [];
    const callEvents: unknown[] = [];
    const none = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
    const onBatch = {
      ...none,
      asyncEnd: (event: WithIdempotencyBatchEvent) => void batchEvents.push(event),
    };
    const onCall = { ...none, start: (event: unknown) => void callEvents.push(event) };
    const batchChannel = tracingChannel<WithIdempotencyBatchEvent, WithIdempotencyBatchEvent>(
      WITH_IDEMPOTENCY_BATCH_CHANNEL,
    );
    const callChannel = tracingChannel(WITH_IDEMPOTENCY_CHANNEL);
    batchChannel.subscribe(onBatch);
    callChannel.subscribe(onCall);
    try {
      await withIdempotencyBatch(
        fx.db,
        { scope: 's' },
        [{ key: processed }, { key: fresh }],
        payEach('s'),
      );
    } finally {
      batchChannel.unsubscribe(onBatch);
      callChannel.unsubscribe(onCall);
    }
    expect(callEvents).toEqual([]);
    expect(batchEvents).toHaveLength(1);
    expect(batchEvents[0]).toMatchObject({
      version: 1,
      scope: 's',
      size: 2,
      attempts: 1,
      executed: 1,
      replayed: 1,
      refused: 0,
    });
    const { result: _result, ...published } = batchEvents[0] as WithIdempotencyBatchEvent;
    expect(JSON.stringify(published)).not.toContain(fresh);
  });
});

function responseOf<T>(result: BatchItemResult<T> | undefined): T | undefined {
  if (!result || result.outcome === 'refused') throw new Error(`no response: ${result?.outcome}`);
  return result.response;
}
