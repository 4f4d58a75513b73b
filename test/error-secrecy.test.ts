/**
 * Keys and scopes are secrets of the caller: an error carries them as fields for code that needs
 * them, but the usual ways of logging an error (console.error / util.inspect, JSON, a logger that
 * copies its enumerable properties, as pino's serializer does) must not print them.
 */
import { inspect } from 'node:util';
import { expect, it } from 'vitest';
import { IdempotencyKeyReusedError, withIdempotency } from '../src/index.ts';
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
