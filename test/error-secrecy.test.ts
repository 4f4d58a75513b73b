/**
 * Keys and scopes are secrets of the caller: an error carries them as fields for code that needs
 * them, but the usual ways of logging an error (console.error / util.inspect, JSON, a logger that
 * copies its enumerable properties, as pino's serializer does) must not print them.
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { expect, it } from 'vitest';
import {
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  ResponseDecryptionError,
  responseEncryption,
  withIdempotency,
} from '../src/index.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

it('keeps the key and the scope on a thrown error, out of what loggers print', async () => {
  const key = uniqueKey('secret-key');
  const scope = 'tenant:secret-tenant';
  await withIdempotency(fx.db, { scope, key, request: { a: 1 } }, createPayment(scope, key));
  const error = await withIdempotency(
    fx.db,
    { scope, key, request: { a: 2 } },
    createPayment(scope, key),
  ).catch((thrown: unknown) => thrown);

  expect(error).toBeInstanceOf(IdempotencyKeyReusedError);
  const reused = error as IdempotencyKeyReusedError;
  expect(reused.key).toBe(key);
  expect(reused.scope).toBe(scope);
  for (const printed of [
    inspect(reused),
    inspect(reused, { depth: 5 }),
    JSON.stringify(reused),
    JSON.stringify({ ...reused }),
    String(reused),
    reused.stack ?? '',
  ]) {
    expect(printed).not.toContain('secret-key');
    expect(printed).not.toContain('secret-tenant');
  }
  expect(Object.keys(reused)).not.toContain('key');
  expect(Object.keys(reused)).toContain('code');
});

/** Every way an error is commonly printed. */
function printed(error: Error): string[] {
  return [
    inspect(error),
    inspect(error, { depth: 5 }),
    JSON.stringify(error),
    JSON.stringify({ ...error }),
    String(error),
    error.stack ?? '',
  ];
}

it('prints neither the key, the scope nor key material for an entry it cannot decrypt', async () => {
  const key = uniqueKey('secret-key');
  const scope = 'tenant:secret-tenant';
  const material = randomBytes(32);
  const other = randomBytes(32);
  const encryption = responseEncryption({ keys: [{ id: 'a', key: material }] });
  await withIdempotency(fx.db, { scope, key, encryption }, createPayment(scope, key));
  const errors = await Promise.all(
    [
      undefined,
      responseEncryption({ keys: [{ id: 'b', key: other }] }),
      responseEncryption({ keys: [{ id: 'a', key: other }] }),
    ].map((wrong) =>
      withIdempotency(fx.db, { scope, key, encryption: wrong }, createPayment(scope, key)).catch(
        (thrown: unknown) => thrown,
      ),
    ),
  );
  expect(errors.map((error) => (error as ResponseDecryptionError).reason)).toEqual([
    'no_key',
    'unknown_key',
    'authentication_failed',
  ]);
  for (const error of errors) {
    expect(error).toBeInstanceOf(ResponseDecryptionError);
    for (const text of printed(error as Error)) {
      expect(text).not.toContain('secret-key');
      expect(text).not.toContain('secret-tenant');
    }
    // Key material is not even on the error: not among its hidden properties either.
    const everything = inspect(error, { depth: 10, showHidden: true });
    for (const secret of [material, other]) {
      expect(everything).not.toContain(secret.toString('hex').slice(0, 12));
      expect(everything).not.toContain(secret.toString('base64').slice(0, 12));
    }
  }
});

it('prints no key material for a bad encryption configuration', () => {
  const short = randomBytes(24);
  const thrown = (() => {
    try {
      responseEncryption({
        keys: [
          { id: 'a', key: short },
          { id: 'a', key: short },
        ],
      });
    } catch (error) {
      return error;
    }
  })();
  expect(thrown).toBeInstanceOf(InvalidIdempotencyOptionsError);
  for (const text of [...printed(thrown as Error), inspect(thrown, { showHidden: true })]) {
    expect(text).not.toContain(short.toString('hex').slice(0, 12));
    expect(text).not.toContain(short.toString('base64').slice(0, 12));
  }
});
