/**
 * Properties of request fingerprints (pure, no database): the fingerprint is a function of the
 * request's meaning as JSON, nothing more and nothing less.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/canonical-json.ts';
import { fingerprintRequest } from '../../src/index.ts';
import { anyJson, fullRun, jsonKey, reshuffle, runs, sameJson, unicodeChar } from './support.ts';

type Path = (string | number)[];

/** Every node of a JSON value, as the path that leads to it (the root is []). */
function paths(value: unknown, prefix: Path = []): Path[] {
  const found: Path[] = [prefix];
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      found.push(...paths(item, [...prefix, index]));
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) found.push(...paths(item, [...prefix, key]));
  }
  return found;
}

/** `value` with the node at `path` replaced by `change(node)`; the original is left as it was. */
function updateAt(value: unknown, path: Path, change: (node: unknown) => unknown): unknown {
  if (path.length === 0) return change(value);
  const [step, ...rest] = path;
  if (Array.isArray(value)) {
    const copy = value.slice();
    copy[step as number] = updateAt(copy[step as number], rest, change);
    return copy;
  }
  // fromEntries, not spread-and-assign: a `__proto__` key must stay an own property.
  return Object.fromEntries(
    Object.entries(value as object).map(([key, item]) =>
      key === step ? [key, updateAt(item, rest, change)] : [key, item],
    ),
  );
}

/** The neighbouring double: the smallest change a number can undergo. */
function nextDouble(value: number, up: boolean): number {
  if (value === 0) return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
  const bits = new BigInt64Array(new Float64Array([value]).buffer);
  // Away from zero is +1 in the bit pattern, towards zero -1, whatever the sign.
  const away = up === value > 0;
  bits[0] = (bits[0] as bigint) + (away ? 1n : -1n);
  const next = new Float64Array(bits.buffer)[0] as number;
  return Number.isFinite(next) ? next : nextDouble(value, !up);
}

interface Mutation {
  node: number;
  kind: number;
  position: number;
  char: string;
  key: string;
  other: unknown;
  up: boolean;
}

/** One small edit of the node at a random path, chosen to be hard to tell apart from the original. */
function mutate(value: unknown, m: Mutation): unknown {
  const all = paths(value);
  const path = all[m.node % all.length] as Path;
  return updateAt(value, path, (node) => {
    const pick = <T>(choices: (() => T)[]) => (choices[m.kind % choices.length] as () => T)();
    if (typeof node === 'number') {
      return pick([
        () => nextDouble(node, m.up),
        () => -node, // 0 and -0 are the same JSON
        () => String(node),
        () => m.other,
      ]);
    }
    if (typeof node === 'string') {
      const at = m.position % (node.length + 1);
      return pick([
        () => node.slice(0, at) + m.char + node.slice(at + 1), // replace one code unit
        () => node.slice(0, at) + m.char + node.slice(at), // insert
        () => node.slice(0, at) + node.slice(at + 1), // delete (may split a surrogate pair)
        () => node.normalize(m.up ? 'NFD' : 'NFC'), // looks the same, is other code points
        () => m.other,
      ]);
    }
    if (Array.isArray(node)) {
      const at = m.position % (node.length + 1);
      return pick([
        () => node.slice().reverse(),
        () => [...node.slice(1), ...node.slice(0, 1)], // rotate
        () => [...node.slice(0, at), m.other, ...node.slice(at)],
        () => [...node.slice(0, at), ...node.slice(at + 1)],
        () => [...node, undefined], // undefined in an array is null, which is not nothing
        () => Object.fromEntries(node.map((item, index) => [String(index), item])),
        () => m.other,
      ]);
    }
    if (node !== null && typeof node === 'object') {
      const entries = Object.entries(node);
      const at = m.position % (entries.length + 1);
      return pick([
        () => Object.fromEntries([...entries, [m.key, m.other]]), // add (or overwrite) a member
        () => Object.fromEntries([...entries, [m.key, undefined]]), // same, unless it removes m.key
        () => Object.fromEntries(entries.filter((_, index) => index !== at)),
        () => Object.fromEntries(entries.map(([k, v], i) => [i === at ? k + m.char : k, v])),
        () => entries.map(([, item]) => item),
        () => m.other,
      ]);
    }
    return pick([() => m.other, () => String(node), () => (node === null ? false : null)]);
  });
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  node: fc.nat(),
  kind: fc.nat(),
  position: fc.nat(),
  char: unicodeChar,
  key: jsonKey,
  other: anyJson,
  up: fc.boolean(),
});

const fingerprintHex = (value: unknown) => fingerprintRequest(value).toString('hex');

describe('fingerprints (property-based)', () => {
  it('ignore object key order at every depth, undefined properties and null prototypes', () => {
    fc.assert(
      fc.property(anyJson, fc.integer(), (value, seed) => {
        const shuffled = reshuffle(value, seed);
        expect(canonicalJson(shuffled)).toBe(canonicalJson(value));
        expect(fingerprintHex(shuffled)).toBe(fingerprintHex(value));
      }),
      runs(1000),
    );
  });

  it('are equal exactly when the two values mean the same JSON', () => {
    const outcomes = { same: 0, different: 0 };
    fc.assert(
      fc.property(anyJson, mutation, (value, m) => {
        const mutated = mutate(value, m);
        const same = sameJson(value, mutated);
        outcomes[same ? 'same' : 'different'] += 1;
        expect(canonicalJson(mutated) === canonicalJson(value)).toBe(same);
        expect(fingerprintHex(mutated) === fingerprintHex(value)).toBe(same);
      }),
      runs(1000),
    );
    // The mutations must mostly produce real differences, or the property proves little.
    if (fullRun()) expect(outcomes.different).toBeGreaterThan(outcomes.same);
  });

  it('differ for numbers one ulp apart and strings one character apart', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), (x, up) => {
        const next = nextDouble(x, up);
        expect(fingerprintHex({ x: next })).not.toBe(fingerprintHex({ x }));
      }),
      runs(500),
    );
    fc.assert(
      fc.property(fc.string({ unit: unicodeChar }), unicodeChar, fc.nat(), (text, char, at) => {
        const edited = `${text.slice(0, at)}${char}${text.slice(at)}`;
        expect(fingerprintHex([edited])).not.toBe(fingerprintHex([text]));
      }),
      runs(500),
    );
  });

  it('write JSON that parses back to what JSON.stringify would have stored', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), anyJson), (value) => {
        const canonical = canonicalJson(value);
        expect(JSON.parse(canonical)).toEqual(JSON.parse(JSON.stringify(value)));
        // Canonical JSON is a fixed point: writing the parsed text again changes nothing.
        expect(canonicalJson(JSON.parse(canonical))).toBe(canonical);
      }),
      runs(500),
    );
  });
});
