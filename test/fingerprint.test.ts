import { describe, expect, it } from 'vitest';
import { canonicalJson, NotJsonError } from '../src/canonical-json.ts';
import { fingerprintRequest } from '../src/index.ts';

describe('canonicalJson', () => {
  it('sorts object keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"e":2,"f":1}]},"b":1}',
    );
  });

  it('treats an undefined property as absent, and undefined in an array as null', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson([1, undefined])).toBe('[1,null]');
  });

  it('writes what JSON.stringify writes for scalars, unicode and toJSON()', () => {
    const samples = ['é🔑\u2028"\\', 0, -0, 1e21, 1.5, true, null, new Date(0)];
    for (const value of samples) expect(canonicalJson(value)).toBe(JSON.stringify(value));
  });

  it('writes holes in sparse arrays as null, and omits members whose toJSON() gives undefined', () => {
    const sparse: unknown[] = [];
    sparse[2] = 1;
    expect(canonicalJson(sparse)).toBe(canonicalJson([null, null, 1]));
    expect(canonicalJson(new Array(1))).toBe('[null]');
    const hidden = { toJSON: () => undefined };
    expect(canonicalJson({ a: 1, hidden })).toBe(JSON.stringify({ a: 1, hidden }));
  });

  it.each([
    ['a BigInt', { n: 1n }, '$.n'],
    ['a function', [() => 1], '$[0]'],
    ['a symbol', { s: Symbol('x') }, '$.s'],
    ['Infinity', { deep: { x: Number.POSITIVE_INFINITY } }, '$.deep.x'],
    ['a Map', { m: new Map() }, '$.m'],
  ])('refuses %s and names where it is', (_label, value, path) => {
    expect(() => canonicalJson(value)).toThrowError(NotJsonError);
    expect(() => canonicalJson(value)).toThrowError(path);
  });

  it('refuses a cycle but accepts the same object twice side by side', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrowError(/cycle/);
  });
});

describe('fingerprintRequest', () => {
  it('is a SHA-256 digest that ignores key order', () => {
    const a = fingerprintRequest({ amount: 100, currency: 'eur', meta: { x: 1, y: 2 } });
    const b = fingerprintRequest({ meta: { y: 2, x: 1 }, currency: 'eur', amount: 100 });
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(true);
  });

  it('differs when any value differs', () => {
    const base = { amount: 100, items: ['a', 'b'], nested: { flag: true } };
    const variants = [
      { ...base, amount: 101 },
      { ...base, items: ['b', 'a'] },
      { ...base, nested: { flag: false } },
      { ...base, extra: null },
      { ...base, amount: '100' },
    ];
    const digest = fingerprintRequest(base).toString('hex');
    for (const variant of variants) {
      expect(fingerprintRequest(variant).toString('hex')).not.toBe(digest);
    }
  });
});
