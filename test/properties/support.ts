/**
 * Arbitraries and helpers shared by the property-based tests. The generators lean towards the
 * values that break serialisers and databases: lone surrogates, NUL, U+2028, combining marks,
 * astral characters, -0, 5e-324, 1e308, integers past 2^53, and keys such as `__proto__`.
 */
import fc from 'fast-check';
import { type Kysely, sql } from 'kysely';
import type { IdempotencyResult } from '../../src/index.ts';

/**
 * fast-check parameters for one property. On failure fast-check prints the seed and path; rerun
 * with FC_SEED=<seed> FC_PATH=<path> (and `-t` to pick the test) to replay that counterexample
 * (the model test also prints a replayPath: pass it as FC_REPLAY_PATH). FC_NUM_RUNS=<n> runs
 * every property n times instead, to hunt for bugs longer than `npm test` can afford.
 */
export function runs(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED;
  const path = process.env.FC_PATH;
  return {
    numRuns: Number(process.env.FC_NUM_RUNS ?? numRuns),
    ...(seed ? { seed: Number(seed) } : {}),
    ...(path ? { path } : {}),
  };
}

/** Empties the business table and the ledger: each run starts afresh, whatever it generated. */
export async function emptyTables<DB>(db: Kysely<DB>): Promise<void> {
  await sql`with gone as (delete from payments) delete from idempotency.ledger`.execute(db);
}

export type Outcome =
  | { ok: true; result: IdempotencyResult<unknown> }
  | { ok: false; error: unknown };

/** A call's result or its error, as a value: what it rejected with is checked, not rethrown. */
export async function settle(call: () => Promise<IdempotencyResult<unknown>>): Promise<Outcome> {
  try {
    return { ok: true, result: await call() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** False when replaying one counterexample, or running few tests: skip "enough cases" checks. */
export function fullRun(): boolean {
  return !process.env.FC_PATH && Number(process.env.FC_NUM_RUNS ?? 100) >= 100;
}

// The characters most likely to be mangled somewhere between JS, the pg driver and Postgres.
const trickyChars = [
  '\uD800', // lone high surrogate
  '\uDBFF',
  '\uDC00', // lone low surrogate
  '\uDFFF',
  '\u0000',
  '\u0001',
  '\n',
  '\u2028', // valid in JSON, a line break in JS source
  '\u2029',
  '"',
  '\\',
  'é',
  'e\u0301', // the same letter, decomposed
  '🔑', // astral: two UTF-16 code units, four UTF-8 bytes
  '\uFEFF',
  '\uFFFD', // the replacement character, which lone surrogates turn into in UTF-8
  '\uFFFF',
  '\u{10FFFF}',
];

/** One "character": any code point, or one of the tricky ones above (lone surrogates included). */
export const unicodeChar: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 3 },
  { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), weight: 3 },
  { arbitrary: fc.constantFrom(...trickyChars), weight: 2 },
);

export const unicodeString = (constraints: { minLength?: number; maxLength?: number } = {}) =>
  fc.string({ unit: unicodeChar, maxLength: 12, ...constraints });

const specialNumbers = [
  0,
  -0,
  1,
  -1,
  0.1,
  1e308,
  -1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE, // 5e-324, the smallest subnormal
  -Number.MIN_VALUE,
  Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 2,
  Number.MIN_SAFE_INTEGER - 2,
  2 ** 64,
  1e21, // the first number JSON.stringify writes with an exponent
  1e-7,
];

export const jsonNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(...specialNumbers),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

/** Object keys, including those with special meaning to JS objects and to JSON.stringify. */
export const jsonKey: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: unicodeString({ maxLength: 6 }), weight: 4 },
  {
    arbitrary: fc.constantFrom(
      '__proto__',
      'constructor',
      'toJSON',
      '',
      '0',
      '1',
      '10',
      '9',
      'a',
      'b',
    ),
    weight: 1,
  },
);

/** Any JSON value, with the tricky strings and numbers above. */
export const jsonValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('scalar'),
    tie('array'),
    tie('object'),
  ),
  scalar: fc.oneof(fc.constant(null), fc.boolean(), jsonNumber, unicodeString()),
  array: fc.array(tie('value'), { maxLength: 5 }),
  object: fc.dictionary(jsonKey, tie('value'), { maxKeys: 5 }),
})).value;

/** Our JSON values, fast-check's own (with any code point), and deeply nested ones. */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: jsonValue, weight: 4 },
  { arbitrary: fc.jsonValue({ stringUnit: 'binary' }), weight: 2 },
  {
    // Deep, but well within the stack: a request or response this deep is legitimate JSON.
    arbitrary: fc
      .tuple(jsonValue, fc.integer({ min: 20, max: 300 }), fc.boolean())
      .map(([inner, depth, asObject]) => nest(inner, depth, asObject)),
    weight: 1,
  },
);

export function nest(inner: unknown, depth: number, asObject: boolean): unknown {
  let value = inner;
  for (let level = 0; level < depth; level++) value = asObject ? { d: value } : [value];
  return value;
}

/** A cycle, for values that must be refused. */
export function cyclic(): unknown {
  const value: Record<string, unknown> = { a: 1 };
  value.self = { back: value };
  return value;
}

/** Values that have no faithful JSON form, alone or buried inside JSON. */
export const notJson: fc.Arbitrary<unknown> = fc
  .tuple(
    fc.constantFrom<() => unknown>(
      () => 10n,
      () => cyclic(),
      () => () => 1,
      () => Symbol('s'),
      () => new Map([['a', 1]]),
      () => new Set([1]),
      () => Number.NaN,
      () => Number.POSITIVE_INFINITY,
      () => ({ toJSON: () => 1n }),
      () => ({
        toJSON() {
          throw new Error('toJSON refuses');
        },
      }),
      // Far deeper than any stack: refused, never a crash.
      () => nest(1, 100_000, false),
    ),
    fc.constantFrom('alone', 'in-array', 'in-object'),
  )
  .map(([make, where]) => {
    const value = make();
    if (where === 'in-array') return [1, value];
    if (where === 'in-object') return { ok: 1, bad: { value } };
    return value;
  });

/** A small deterministic PRNG, so that a shrunk counterexample shuffles the same way again. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The same JSON value with every object's keys in another order, `undefined` properties sprinkled
 * in, and some objects given a null prototype. Objects are built with Object.fromEntries, so a
 * `__proto__` key stays an own property instead of setting the prototype.
 */
export function reshuffle(value: unknown, seed: number): unknown {
  const random = prng(seed);
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (node === null || typeof node !== 'object') return node;
    // A Date and the like stand for their toJSON(): leave them whole.
    const prototype = Object.getPrototypeOf(node);
    if (prototype !== Object.prototype && prototype !== null) return node;
    const entries: [string, unknown][] = Object.entries(node).map(([k, v]) => [k, visit(v)]);
    for (let index = entries.length - 1; index > 0; index--) {
      const other = Math.floor(random() * (index + 1));
      [entries[index], entries[other]] = [
        entries[other] as [string, unknown],
        entries[index] as [string, unknown],
      ];
    }
    if (random() < 0.3)
      entries.splice(Math.floor(random() * (entries.length + 1)), 0, [`u${random()}`, undefined]);
    const rebuilt = Object.fromEntries(entries);
    return random() < 0.2 ? Object.assign(Object.create(null), rebuilt) : rebuilt;
  };
  return visit(value);
}

/**
 * Whether two values have the same meaning as JSON: equal after a JSON.stringify round trip, with
 * object key order ignored. Independent of the library's canonical JSON, which it checks.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  const normalise = (value: unknown) => {
    const json = JSON.stringify(value);
    return json === undefined ? undefined : JSON.parse(json);
  };
  return sameNormalised(normalise(a), normalise(b));
}

function sameNormalised(a: unknown, b: unknown): boolean {
  if (Array.isArray(a)) {
    return (
      Array.isArray(b) && a.length === b.length && a.every((item, i) => sameNormalised(item, b[i]))
    );
  }
  if (a !== null && typeof a === 'object') {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) return false;
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length &&
      keys.every(
        (key) =>
          Object.hasOwn(b, key) &&
          sameNormalised((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
      )
    );
  }
  return a === b;
}
