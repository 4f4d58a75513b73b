/**
 * The same key in two scopes is two operations, however alike the two scopes look.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidIdempotencyOptionsError, withIdempotency } from '../../src/index.ts';
import { useLedgerFixture } from '../support/ledger-fixture.ts';
import { emptyTables, runs, settle, unicodeChar } from './support.ts';

const fx = useLedgerFixture();

describe('scopes (property-based)', () => {
  // Lone surrogates ('a\uD800' vs 'a\uDC00') have no UTF-8 form and would reach Postgres as the
  // same text (U+FFFD): such scopes are refused. Either outcome keeps scopes apart.
  it('keep the same key in two different scopes apart', async () => {
    // Characters whose encodings are easily confused: surrogate halves, U+FFFD, composed or not.
    const lookalike = fc.constantFrom(
      'a',
      '\uD800',
      '\uDBFF',
      '\uDC00',
      '\uFFFD',
      '🔑',
      'é',
      'e\u0301',
    );
    const scope = fc.string({ unit: fc.oneof(unicodeChar, lookalike), minLength: 1, maxLength: 6 });
    // The second scope is often the first with one character changed: the closest call.
    const scopes = fc
      .tuple(scope, scope, fc.nat(), unicodeChar, fc.boolean())
      .map(([a, b, at, char, edit]) => {
        const position = at % a.length;
        return [a, edit ? a.slice(0, position) + char + a.slice(position + 1) : b] as const;
      })
      .filter(([a, b]) => a !== b && !a.includes('\0') && !b.includes('\0'));
    await fc.assert(
      fc.asyncProperty(
        scopes,
        fc.string({ unit: 'grapheme-ascii', minLength: 1 }),
        async ([a, b], key) => {
          await emptyTables(fx.db);
          for (const scope of [a, b]) {
            const outcome = await settle(() =>
              withIdempotency(fx.db, { scope, key }, async () => `executed in ${scope}`),
            );
            if (outcome.ok) {
              expect(outcome.result).toEqual({ response: `executed in ${scope}`, replayed: false });
            } else {
              expect(outcome.error).toBeInstanceOf(InvalidIdempotencyOptionsError);
            }
          }
        },
      ),
      // The known counterexample first, then random pairs.
      { ...runs(100), examples: [[['a\uD800', 'a\uDC00'], 'k']] },
    );
  });
});
