import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  cleanupExpired,
  type IdempotencyError,
  type IdempotencyOptions,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  isValidIdempotencyKey,
  scheduleCleanup,
  UnstorableResponseError,
  validateIdempotencyOptions,
  withIdempotency,
} from '../src/index.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** Calls withIdempotency with options that should be refused before fn runs or anything is written. */
async function expectRefused(
  options: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: any IdempotencyError subclass, whatever its constructor.
  errorClass: new (...args: any[]) => IdempotencyError,
): Promise<IdempotencyError> {
  let ran = false;
  const call = withIdempotency(fx.db, options as IdempotencyOptions, async () => {
    ran = true;
  });
  await expect(call).rejects.toBeInstanceOf(errorClass);
  expect(ran).toBe(false);
  return call.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: IdempotencyError) => error,
  );
}

const cycle: Record<string, unknown> = { a: 1 };
cycle.self = cycle;

describe('bad input', () => {
  it.each([
    ['an empty key', ''],
    ['a 256-character key', 'k'.repeat(256)],
    ['a non-ASCII key', 'clé-🔑'],
    ['a key with a control character', 'abc\ndef'],
    ['a missing key', undefined],
    ['a number as key', 42],
    ['a repeated header (an array)', ['k1', 'k2']],
  ])('refuses %s with a 400 InvalidIdempotencyKeyError', async (_label, key) => {
    const error = await expectRefused({ scope: 's', key }, InvalidIdempotencyKeyError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_key' });
    if (typeof key === 'string') expect(await fx.countEntries(key)).toBe(0);
  });

  it('accepts a 255-character printable key', async () => {
    const key = `${uniqueKey()}-`.padEnd(255, '~');
    const result = await withIdempotency(fx.db, { scope: 's', key }, async () => 'ok');
    expect(result.replayed).toBe(false);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it.each([
    ['a missing scope', { key: 'k' }],
    ['an empty scope', { scope: '', key: 'k' }],
    ['a scope with a lone surrogate', { scope: 'tenant-\uD800', key: 'k' }],
    ['a negative ttlMs', { scope: 's', key: 'k', ttlMs: -1 }],
    ['a fractional ttlMs', { scope: 's', key: 'k', ttlMs: 1.5 }],
    ['an unknown onConcurrent', { scope: 's', key: 'k', onConcurrent: 'maybe' }],
    ['a zero waitTimeoutMs', { scope: 's', key: 'k', waitTimeoutMs: 0 }],
    ['a misspelt option', { scope: 's', key: 'k', ttl: 1000 }],
    ['a responseSchema that is not a schema', { scope: 's', key: 'k', responseSchema: {} }],
    ['a BigInt in the request', { scope: 's', key: 'k', request: { amount: 10n } }],
    ['a cycle in the request', { scope: 's', key: 'k', request: cycle }],
    ['a Map in the request', { scope: 's', key: 'k', request: { items: new Map() } }],
    ['NaN in the request', { scope: 's', key: 'k', request: [Number.NaN] }],
  ])('refuses %s with an InvalidIdempotencyOptionsError', async (_label, options) => {
    const error = await expectRefused(options, InvalidIdempotencyOptionsError);
    expect(error.code).toBe('invalid_options');
    expect((error as InvalidIdempotencyOptionsError).issues.length).toBeGreaterThan(0);
  });

  it('refuses options that are not an object', async () => {
    await expectRefused(null, InvalidIdempotencyOptionsError);
  });

  it('says what is wrong with a scope that is too long, rather than that it is missing', async () => {
    const error = await expectRefused(
      { scope: 's'.repeat(256), key: 'k' },
      InvalidIdempotencyOptionsError,
    );
    expect((error as InvalidIdempotencyOptionsError).issues).toEqual([
      expect.stringMatching(/^scope: .*255/),
    ]);
    expect(error.message).not.toMatch(/required/);
  });

  it.each([
    ['a pg Pool', () => fx.pool],
    ['a plain object', () => ({})],
    ['null', () => null],
  ])('refuses %s as db with a typed error, for every entry point', async (_label, makeDb) => {
    const db = makeDb() as unknown as typeof fx.db;
    await expect(withIdempotency(db, { scope: 's', key: 'k' }, async () => 1)).rejects.toThrow(
      InvalidIdempotencyOptionsError,
    );
    await expect(cleanupExpired(db)).rejects.toThrow(InvalidIdempotencyOptionsError);
    expect(() => scheduleCleanup(db)).toThrow(InvalidIdempotencyOptionsError);
  });
});

describe('isValidIdempotencyKey', () => {
  it.each([
    ['', false],
    ['bad-\u00e9', false],
    ['a\nb', false],
    ['x'.repeat(256), false],
    [42, false],
    [undefined, false],
    ['x'.repeat(255), true],
    ['order 42/~!', true],
  ])('answers as withIdempotency checks the key (%j -> %s)', async (key, valid) => {
    expect(isValidIdempotencyKey(key)).toBe(valid);
    if (!valid) await expectRefused({ scope: 's', key }, InvalidIdempotencyKeyError);
  });
});

describe('validateIdempotencyOptions', () => {
  it.each([
    ['scope', { scope: 'a\0b' }],
    ['scope', { scope: 'a\ud800' }],
    ['waitTimeoutMs', { waitTimeoutMs: 1e12 }],
    ['ttlMs', { ttlMs: 0 }],
    ['schema', { schema: 'x'.repeat(64) }],
    ['request', { request: { n: 1n } }],
  ])('refuses what withIdempotency refuses (%s), naming the caller', async (option, invalid) => {
    const options = { scope: 's', ...invalid };
    const check = () => validateIdempotencyOptions(options, 'ordersConsumer');
    expect(check).toThrow(InvalidIdempotencyOptionsError);
    expect(check).toThrow(
      expect.objectContaining({ issues: [expect.stringMatching(new RegExp(`^${option}: `))] }),
    );
    if (option !== 'request') expect(check).toThrow(/^Invalid ordersConsumer options/);
    await expectRefused({ ...options, key: uniqueKey() }, InvalidIdempotencyOptionsError);
  });

  it('accepts valid options without a key', () => {
    expect(() =>
      validateIdempotencyOptions({ scope: 's', ttlMs: 1000, waitTimeoutMs: 2_147_483_647 }),
    ).not.toThrow();
  });
});

describe('error messages', () => {
  // A key can be the bearer of someone's response, and a scope often names a tenant: messages go
  // to logs and clients, so neither may appear in one. Both stay available as fields.
  const scope = 'tenant-SECRET-SCOPE-7f3a';
  const messageOf = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected a rejection');
      },
      (error: IdempotencyError) => error,
    );

  it('never contain the key or the scope, which stay on the error as fields', async () => {
    const key = uniqueKey('SECRET-KEY');
    const errors: IdempotencyError[] = [];
    // key_reused
    await withIdempotency(fx.db, { scope, key, request: 1 }, async () => 'first');
    errors.push(await messageOf(withIdempotency(fx.db, { scope, key, request: 2 }, async () => 0)));
    // unstorable_response
    const other = `${key}-2`;
    errors.push(await messageOf(withIdempotency(fx.db, { scope, key: other }, async () => 1n)));
    // stored_response_invalid
    const schema = z.number();
    errors.push(
      await messageOf(
        withIdempotency(fx.db, { scope, key, request: 1, responseSchema: schema }, async () => 0),
      ),
    );
    // conflict, in_flight and same_transaction
    const held = await startHeldCall(fx.db, scope, `${key}-3`);
    errors.push(
      await messageOf(
        withIdempotency(fx.db, { scope, key: `${key}-3`, onConcurrent: 'reject' }, async () => 0),
      ),
    );
    held.release();
    await held.first;
    await fx.db.transaction().execute(async (trx) => {
      await withIdempotency(trx, { scope, key: `${key}-4` }, async () => {
        errors.push(
          await messageOf(withIdempotency(trx, { scope, key: `${key}-4` }, async () => 0)),
        );
      });
    });
    // invalid_key (a key that is long but otherwise valid-looking)
    const longKey = `${key}`.padEnd(300, 'x');
    errors.push(await messageOf(withIdempotency(fx.db, { scope, key: longKey }, async () => 0)));

    expect(errors.map((error) => error.code)).toEqual([
      'key_reused',
      'unstorable_response',
      'stored_response_invalid',
      'conflict',
      'conflict',
      'invalid_key',
    ]);
    for (const error of errors) {
      const text = `${error.message} ${String(error)} ${error.stack ?? ''}`;
      expect(text).not.toContain('SECRET');
      expect(error.scope).toBe(scope);
      expect(error.key?.startsWith(key)).toBe(true);
    }
  });
});

describe('responses that cannot be stored', () => {
  it.each([
    ['a BigInt', () => ({ amount: 10n }), 'not_json'],
    ['a cycle', () => cycle, 'not_json'],
    ['a function', () => () => 1, 'not_json'],
    ['over 1 MiB of JSON', () => ({ blob: 'x'.repeat(1024 * 1024) }), 'too_large'],
  ])('rolls back the business write when fn returns %s', async (_label, makeResponse, reason) => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      await createPayment('s', key)(trx);
      return makeResponse() as unknown;
    });
    await expect(call).rejects.toBeInstanceOf(UnstorableResponseError);
    await expect(call).rejects.toMatchObject({ code: 'unstorable_response', reason, key });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    // Nothing was left behind: a corrected retry executes.
    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('reports an SQL error that fn caught and ignored, and commits nothing', async () => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      await createPayment('s', key)(trx);
      await sql`select 1 / 0`.execute(trx).catch(() => undefined);
      return 'ok';
    });
    await expect(call).rejects.toBeInstanceOf(UnstorableResponseError);
    await expect(call).rejects.toMatchObject({ reason: 'transaction_aborted', key });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('honours a smaller maxResponseBytes', async () => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { scope: 's', key, maxResponseBytes: 10 }, async () => ({
      text: 'more than ten bytes',
    }));
    await expect(call).rejects.toMatchObject({ reason: 'too_large' });
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses a response that fails responseSchema', async () => {
    const key = uniqueKey();
    const call = withIdempotency(
      fx.db,
      { scope: 's', key, responseSchema: z.object({ id: z.string() }) },
      async (trx) => {
        await createPayment('s', key)(trx);
        return { id: 7 } as unknown as { id: string };
      },
    );
    await expect(call).rejects.toMatchObject({ reason: 'schema' });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses an asynchronous responseSchema with a typed error, and commits nothing', async () => {
    const key = uniqueKey();
    const call = withIdempotency(
      fx.db,
      { scope: 's', key, responseSchema: z.object({ id: z.string() }).refine(async () => true) },
      async (trx) => {
        await createPayment('s', key)(trx);
        return { id: 'p-1' };
      },
    );
    await expect(call).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses a responseSchema that cannot read back its own JSON, before anything commits', async () => {
    const key = uniqueKey();
    // z.date() accepts the Date, but a replay would read an ISO string: caught on the first call.
    const call = withIdempotency(
      fx.db,
      { scope: 's', key, responseSchema: z.object({ at: z.date() }) },
      async (trx) => {
        await createPayment('s', key)(trx);
        return { at: new Date() };
      },
    );
    await expect(call).rejects.toMatchObject({ reason: 'schema' });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });
});
