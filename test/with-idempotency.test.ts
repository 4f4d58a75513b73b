import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  IdempotencyKeyReusedError,
  StoredResponseInvalidError,
  withIdempotency,
} from '../src/index.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

describe('withIdempotency', () => {
  it('executes once, then replays the identical response with replayed: true', async () => {
    const key = uniqueKey();
    const options = { scope: 'tenant-a', key, request: { amount: 100, currency: 'eur' } };

    const first = await withIdempotency(fx.db, options, createPayment('tenant-a', key));
    const second = await withIdempotency(fx.db, options, createPayment('tenant-a', key));

    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(true);
    expect(JSON.stringify(second.response)).toBe(JSON.stringify(first.response));
    expect(second.response).toEqual(first.response);
    expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it('does not run fn on a replay', async () => {
    const key = uniqueKey();
    let runs = 0;
    const fn = async () => {
      runs += 1;
      return 'done';
    };
    await withIdempotency(fx.db, { scope: 's', key }, fn);
    await withIdempotency(fx.db, { scope: 's', key }, fn);
    await withIdempotency(fx.db, { scope: 's', key }, fn);
    expect(runs).toBe(1);
  });

  it('rolls everything back and passes fn errors through unchanged', async () => {
    const key = uniqueKey();
    const failure = new Error('card declined');
    await expect(
      withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
        await createPayment('s', key)(trx);
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses the same key with a different request and does not run fn', async () => {
    const key = uniqueKey();
    await withIdempotency(
      fx.db,
      { scope: 's', key, request: { amount: 100 } },
      createPayment('s', key),
    );
    let ran = false;
    const reused = withIdempotency(
      fx.db,
      { scope: 's', key, request: { amount: 999 } },
      async () => {
        ran = true;
      },
    );
    await expect(reused).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(reused).rejects.toMatchObject({
      status: 422,
      code: 'key_reused',
      scope: 's',
      key,
    });
    expect(ran).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('treats a request with reordered object keys as the same request', async () => {
    const key = uniqueKey();
    const request = { amount: 100, customer: { id: 'c1', tags: ['a', 'b'] }, note: undefined };
    const reordered = { customer: { tags: ['a', 'b'], id: 'c1' }, amount: 100 };
    const first = await withIdempotency(
      fx.db,
      { scope: 's', key, request },
      createPayment('s', key),
    );
    const second = await withIdempotency(
      fx.db,
      { scope: 's', key, request: reordered },
      createPayment('s', key),
    );
    expect(second.replayed).toBe(true);
    expect(second.response).toEqual(first.response);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses a retry that omits the request the key was first used with', async () => {
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key, request: { a: 1 } }, async () => 1);
    await expect(withIdempotency(fx.db, { scope: 's', key }, async () => 1)).rejects.toBeInstanceOf(
      IdempotencyKeyReusedError,
    );
  });

  it('executes the same key once in each scope', async () => {
    const key = uniqueKey();
    const a = await withIdempotency(
      fx.db,
      { scope: 'tenant-a', key },
      createPayment('tenant-a', key),
    );
    const b = await withIdempotency(
      fx.db,
      { scope: 'tenant-b', key },
      createPayment('tenant-b', key),
    );
    expect(a.replayed).toBe(false);
    expect(b.replayed).toBe(false);
    expect(b.response).not.toEqual(a.response);
    expect(await fx.countPayments(key, 'tenant-a')).toBe(1);
    expect(await fx.countPayments(key, 'tenant-b')).toBe(1);
  });

  it('returns the JSON form of the response on the first call too, as every replay will', async () => {
    const key = uniqueKey();
    const createdAt = new Date('2026-01-02T03:04:05.678Z');
    const first = await withIdempotency(fx.db, { scope: 's', key }, async () => ({
      createdAt,
      dropped: undefined,
      order: { z: 1, a: 2 },
    }));
    const replay = await withIdempotency(fx.db, { scope: 's', key }, async () => ({}));
    expect(first.response).toEqual({ createdAt: createdAt.toISOString(), order: { z: 1, a: 2 } });
    expect(replay.response).toEqual(first.response);
    // Key order is preserved: the replay serialises to the same bytes.
    expect(JSON.stringify(replay.response)).toBe(
      '{"createdAt":"2026-01-02T03:04:05.678Z","order":{"z":1,"a":2}}',
    );
  });

  it('gives back typed values through responseSchema, on the first call and on replay', async () => {
    const key = uniqueKey();
    const responseSchema = z.object({ id: z.string(), createdAt: z.coerce.date() });
    const createdAt = new Date('2026-05-06T07:08:09.000Z');
    const options = { scope: 's', key, responseSchema };
    const first = await withIdempotency(fx.db, options, async () => ({ id: 'p1', createdAt }));
    const replay = await withIdempotency(fx.db, options, async () => ({ id: 'other', createdAt }));
    expect(first.response.createdAt).toBeInstanceOf(Date);
    expect(replay.response.createdAt).toBeInstanceOf(Date);
    expect(replay.response).toEqual({ id: 'p1', createdAt });
  });

  it('applies a responseSchema transform once, on the first call and on replay alike', async () => {
    const key = uniqueKey();
    const responseSchema = z.object({ cents: z.number().transform((cents) => cents / 100) });
    const options = { scope: 's', key, responseSchema };
    const first = await withIdempotency(fx.db, options, async () => ({ cents: 250 }));
    const replay = await withIdempotency(fx.db, options, async () => ({ cents: 1 }));
    expect(first.response).toEqual({ cents: 2.5 });
    expect(replay).toEqual({ response: { cents: 2.5 }, replayed: true });
  });

  it('reports a stored response that no longer matches responseSchema', async () => {
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key }, async () => ({ id: 42 }));
    const replay = withIdempotency(
      fx.db,
      { scope: 's', key, responseSchema: z.object({ id: z.string() }) },
      async () => ({ id: 'x' }),
    );
    await expect(replay).rejects.toBeInstanceOf(StoredResponseInvalidError);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it('stores undefined, null and scalar responses distinctly', async () => {
    for (const value of [undefined, null, 0, '', false, [1, null]]) {
      const key = uniqueKey();
      const first = await withIdempotency(fx.db, { scope: 's', key }, async () => value);
      const replay = await withIdempotency(fx.db, { scope: 's', key }, async () => 'other');
      expect(first.response).toEqual(value);
      expect(replay).toEqual({ response: value, replayed: true });
    }
  });
});
