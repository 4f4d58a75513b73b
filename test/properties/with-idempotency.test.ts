/**
 * withIdempotency over arbitrary scopes, keys, requests, responses and fn behaviours, against a
 * real database. Whatever the input, a call succeeds, fails with an IdempotencyError, or fails with
 * exactly what fn threw; and the business row and the ledger entry exist together or not at all.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/canonical-json.ts';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  IdempotencyError,
  IdempotencyKeyReusedError,
  type IdempotencyOptions,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  UnstorableResponseError,
  withIdempotency,
} from '../../src/index.ts';
import { countCheckedOutClients } from '../support/database.ts';
import { useLedgerFixture } from '../support/ledger-fixture.ts';
import {
  anyJson,
  emptyTables,
  fullRun,
  notJson,
  reshuffle,
  runs,
  sameJson,
  settle,
  unicodeChar,
  unicodeString,
} from './support.ts';

const fx = useLedgerFixture();
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason);
};
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

async function countRows(): Promise<{ payments: number; entries: number }> {
  const { rows } = await sql<{ payments: number; entries: number }>`
    select (select count(*) from payments)::int as payments,
           (select count(*) from idempotency.ledger)::int as entries`.execute(fx.db);
  return rows[0] as { payments: number; entries: number };
}

// Scopes: the valid range, its edges (empty, 255/256 characters, NUL), and any unicode.
const scopeArb: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: unicodeString({ minLength: 1, maxLength: 20 }), weight: 10 },
  { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 }), weight: 4 },
  {
    arbitrary: fc.constantFrom(
      '',
      'a\u0000b',
      's'.repeat(255),
      's'.repeat(256),
      '🔑'.repeat(255),
      '🔑'.repeat(256),
    ),
    weight: 1,
  },
  { arbitrary: fc.string({ unit: unicodeChar, minLength: 200, maxLength: 300 }), weight: 1 },
);

// Keys: printable ASCII (valid) most of the time, then every way of being invalid.
const keyArb: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }), weight: 12 },
  { arbitrary: fc.constantFrom('~'.repeat(255), '~'.repeat(256), '', ' ', 'a\tb'), weight: 1 },
  { arbitrary: unicodeString({ minLength: 1 }), weight: 1 },
  { arbitrary: fc.constantFrom(undefined, null, 42, ['k']), weight: 1 },
);

const requestArb: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: anyJson, weight: 6 },
  { arbitrary: fc.constant(undefined), weight: 2 },
  { arbitrary: fc.constant(new Date(0)), weight: 1 }, // toJSON(): a valid request
  { arbitrary: notJson, weight: 1 },
);

// maxResponseBytes: mostly small, so that ordinary responses cross it; sometimes the default.
const maxBytesArb = fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined });

/** A string whose JSON is just under, at, or just over the byte limit, in 1- or 2-byte UTF-8. */
const hugeArb = fc
  .tuple(fc.integer({ min: -2, max: 1 }), fc.constantFrom('x', 'é'))
  .map(([offset, char]) => ({ offset, char }));

const responseArb = fc.oneof(
  { arbitrary: anyJson.map((value) => ({ value })), weight: 8 },
  { arbitrary: fc.constantFrom(undefined, null).map((value) => ({ value })), weight: 1 },
  { arbitrary: notJson.map((value) => ({ value })), weight: 2 },
  { arbitrary: hugeArb.map((huge) => ({ huge })), weight: 1 },
);

// What fn throws: errors, non-errors, things that look like pg or library errors.
const thrownArb = fc.constantFrom<() => unknown>(
  () => new Error('card declined'),
  () => new TypeError('caller bug'),
  () => 'a string',
  () => null,
  () => undefined,
  () => 0,
  () => Object.assign(new Error('looks like a pg error'), { code: '23505' }),
  () => new InvalidIdempotencyKeyError({ message: 'fn rethrew a library error' }),
  () => Object.freeze({ frozen: true }),
  // A serialization failure, as far as the library can tell: it retries, fn runs again.
  () => Object.assign(new Error('could not serialize access'), { code: '40001' }),
);

// The library retries its transaction on these, up to maxAttempts (default 5) runs of fn.
const isRetryable = (error: unknown) =>
  ['40001', '40P01'].includes((error as { code?: unknown } | null)?.code as string);

type Behaviour =
  | { kind: 'return' }
  | { kind: 'throw'; make: () => unknown }
  | { kind: 'throw-sync'; make: () => unknown }
  | { kind: 'sql-error' };

const behaviourArb: fc.Arbitrary<Behaviour> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'return' as const }), weight: 6 },
  { arbitrary: thrownArb.map((make) => ({ kind: 'throw' as const, make })), weight: 2 },
  { arbitrary: thrownArb.map((make) => ({ kind: 'throw-sync' as const, make })), weight: 1 },
  { arbitrary: fc.constant({ kind: 'sql-error' as const }), weight: 1 },
);

/** What the README says a response becomes: its JSON form, or an UnstorableResponseError. */
function expectedResponse(
  value: unknown,
  maxBytes: number,
): { storable: true; json: string | undefined } | { storable: false; reason: string } {
  if (value === undefined) return { storable: true, json: undefined };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    return { storable: false, reason: 'not_json' };
  }
  if (json === undefined) return { storable: false, reason: 'not_json' };
  if (Buffer.byteLength(json, 'utf8') > maxBytes) return { storable: false, reason: 'too_large' };
  return { storable: true, json };
}

/** The errors an invalid scope, key or request may raise; empty when all three are valid. */
function inputErrors(scope: string, key: unknown, request: unknown): Set<unknown> {
  const errors = new Set<unknown>();
  // Characters are code points, as zod counts them: '🔑' is one, a lone surrogate is one.
  const characters = [...scope].length;
  // A lone surrogate (no UTF-8 form) would reach Postgres as U+FFFD, merging two scopes.
  const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
  if (characters < 1 || characters > 255 || scope.includes('\0') || loneSurrogate.test(scope)) {
    errors.add(InvalidIdempotencyOptionsError);
  }
  if (typeof key !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(key)) {
    errors.add(InvalidIdempotencyKeyError);
  }
  if (request !== undefined) {
    try {
      canonicalJson(request);
    } catch {
      errors.add(InvalidIdempotencyOptionsError);
    }
  }
  return errors;
}

/** A request whose JSON means something else than `request`'s. */
function differentRequest(request: unknown, candidate: unknown): unknown {
  let other = candidate;
  while (other === undefined || sameJson(other, request)) other = [other ?? null];
  return other;
}

describe('withIdempotency over arbitrary inputs (property-based)', () => {
  it('succeeds, refuses with an IdempotencyError, or passes fn’s own error on; never half-writes', async () => {
    unhandled = [];
    const seen = { refused: 0, fnError: 0, unstorable: 0, executed: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          scope: scopeArb,
          key: keyArb,
          request: requestArb,
          response: responseArb,
          behaviour: behaviourArb,
          maxResponseBytes: maxBytesArb,
          other: anyJson,
          shuffleSeed: fc.integer(),
        }),
        async ({
          scope,
          key,
          request,
          response,
          behaviour,
          maxResponseBytes,
          other,
          shuffleSeed,
        }) => {
          await emptyTables(fx.db);
          const maxBytes = maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
          const value =
            'huge' in response
              ? // JSON adds two quotes around the string.
                response.huge.char.repeat(
                  Math.max(
                    0,
                    Math.floor((maxBytes - 2) / Buffer.byteLength(response.huge.char)) +
                      response.huge.offset,
                  ),
                )
              : response.value;
          const options = {
            scope,
            key,
            request,
            ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }),
          } as IdempotencyOptions;

          let fnRuns = 0;
          let thrown: unknown;
          const fn = ((trx: typeof fx.db) => {
            fnRuns += 1;
            if (behaviour.kind === 'throw-sync') {
              thrown = behaviour.make();
              throw thrown;
            }
            return (async () => {
              await trx
                .insertInto('payments')
                .values({ scope, key: String(key), amount: 1 })
                .execute();
              if (behaviour.kind === 'throw') {
                thrown = behaviour.make();
                throw thrown;
              }
              if (behaviour.kind === 'sql-error') {
                // fn's own failing statement: its pg error is fn's error, and must pass unchanged.
                await sql`select 1 / 0`.execute(trx).catch((error: unknown) => {
                  thrown = error;
                  throw error;
                });
              }
              return value;
            })();
          }) as (trx: unknown) => Promise<unknown>;

          const first = await settle(() => withIdempotency(fx.db, options, fn));
          const refusals = inputErrors(scope, key, request);
          const expected = expectedResponse(value, maxBytes);
          const rows = await countRows();
          expect(countCheckedOutClients(fx)).toBe(0);

          if (refusals.size > 0) {
            // Refused up front: fn never ran, nothing was written.
            expect(first.ok).toBe(false);
            const error = (first as { error: unknown }).error;
            expect(refusals.has((error as object)?.constructor)).toBe(true);
            expect(fnRuns).toBe(0);
            expect(rows).toEqual({ payments: 0, entries: 0 });
            seen.refused += 1;
            return;
          }
          expect(fnRuns).toBe(isRetryable(thrown) ? 5 : 1);
          if (behaviour.kind !== 'return') {
            expect(first).toEqual({ ok: false, error: thrown });
            if (!first.ok) expect(first.error).toBe(thrown); // the very object, not a copy
            expect(rows).toEqual({ payments: 0, entries: 0 });
            seen.fnError += 1;
          } else if (!expected.storable) {
            expect(first.ok).toBe(false);
            const error = (first as { error: unknown }).error;
            expect(error).toBeInstanceOf(UnstorableResponseError);
            expect((error as UnstorableResponseError).reason).toBe(expected.reason);
            expect(rows).toEqual({ payments: 0, entries: 0 });
            seen.unstorable += 1;
          } else {
            if (!first.ok) throw first.error;
            expect(first.result.replayed).toBe(false);
            expect(JSON.stringify(first.result.response)).toBe(expected.json);
            expect(first.result.response).toEqual(
              expected.json === undefined ? undefined : JSON.parse(expected.json),
            );
            expect(rows).toEqual({ payments: 1, entries: 1 });
            // Stored as the exact text JSON.stringify wrote: SQL NULL for undefined, keys unsorted.
            const { rows: stored } = await sql<{ response: string | null }>`
              select response::text as response from idempotency.ledger`.execute(fx.db);
            expect(stored).toEqual([{ response: expected.json ?? null }]);

            // A retry of the same request (keys in another order) replays the stored response.
            const retryOptions = { ...options, request: reshuffle(request, shuffleSeed) };
            const replay = await settle(() => withIdempotency(fx.db, retryOptions, fn));
            if (!replay.ok) throw replay.error;
            expect(replay.result.replayed).toBe(true);
            expect(JSON.stringify(replay.result.response)).toBe(expected.json);
            expect(replay.result.response).toEqual(first.result.response);

            // Another request under the same key is refused, and fn does not run.
            const reuseOptions = { ...options, request: differentRequest(request, other) };
            const reuse = await settle(() => withIdempotency(fx.db, reuseOptions, fn));
            expect(reuse.ok).toBe(false);
            expect((reuse as { error: unknown }).error).toBeInstanceOf(IdempotencyKeyReusedError);
            expect(fnRuns).toBe(1);
            expect(await countRows()).toEqual({ payments: 1, entries: 1 });
            seen.executed += 1;
            return;
          }

          // The failure left nothing behind: a corrected retry executes.
          const retried = await withIdempotency(
            fx.db,
            { scope, key: key as string, request },
            async (trx) => {
              await trx
                .insertInto('payments')
                .values({ scope, key: String(key), amount: 2 })
                .execute();
              return 'retried';
            },
          );
          expect(retried).toEqual({ response: 'retried', replayed: false });
          expect(await countRows()).toEqual({ payments: 1, entries: 1 });
        },
      ),
      runs(300),
    );
    expect(unhandled).toEqual([]);
    // Every kind of outcome came up, or the property proved less than it claims.
    if (fullRun()) for (const count of Object.values(seen)) expect(count).toBeGreaterThan(0);
  });

  it('rejects only with IdempotencyErrors or fn’s own error, whatever is passed in', async () => {
    unhandled = [];
    await emptyTables(fx.db);
    const anything = fc.oneof(fc.anything(), notJson, anyJson);
    const optionName = fc.constantFrom(
      'scope',
      'key',
      'request',
      'ttlMs',
      'onConcurrent',
      'waitTimeoutMs',
      'responseSchema',
      'maxResponseBytes',
      'schema',
      'isolationLevel',
      'maxAttempts',
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ scope: fc.oneof(scopeArb, anything), key: keyArb }),
          fc.dictionary(optionName, anything),
          fc.dictionary(fc.string(), anything),
          anything,
        ),
        async (options) => {
          const mine = new Error('fn ran');
          const outcome = await settle(() =>
            withIdempotency(fx.db, options as IdempotencyOptions, async () => {
              throw mine;
            }),
          );
          if (!outcome.ok) {
            expect(
              outcome.error === mine || outcome.error instanceof IdempotencyError,
              String(outcome.error),
            ).toBe(true);
          }
          expect(countCheckedOutClients(fx)).toBe(0);
        },
      ),
      runs(200),
    );
    expect(await countRows()).toEqual({ payments: 0, entries: 0 });
    expect(unhandled).toEqual([]);
  });
});
