import { describe, expect, it } from 'vitest';
import {
  type FingerprintChoice,
  type HttpRequestFacts,
  httpRequestFingerprint,
} from '../../src/http/index.ts';
import { fingerprintRequest } from '../../src/index.ts';

function facts(overrides: Partial<HttpRequestFacts> & { headers?: Record<string, string> } = {}) {
  const { headers = {}, ...rest } = overrides;
  return {
    method: 'POST',
    target: '/payments',
    keyHeader: 'k',
    body: undefined,
    header: (name: string) => headers[name],
    ...rest,
  } satisfies HttpRequestFacts;
}

/** The digest the ledger stores for a request: equal digests replay, different ones are a 422. */
function digest(request: Partial<HttpRequestFacts> & { headers?: Record<string, string> }) {
  return (choice: FingerprintChoice = {}) =>
    fingerprintRequest(httpRequestFingerprint(facts(request), choice)).toString('hex');
}

describe('httpRequestFingerprint', () => {
  it('ignores the order of keys in a parsed JSON body, at every depth', () => {
    const a = digest({ body: { amount: 100, meta: { x: 1, y: [1, { p: 1, q: 2 }] } } })();
    const b = digest({ body: { meta: { y: [1, { q: 2, p: 1 }], x: 1 }, amount: 100 } })();
    expect(a).toBe(b);
    expect(digest({ body: { amount: 101 } })()).not.toBe(digest({ body: { amount: 100 } })());
    expect(digest({ body: { y: [2, 1] } })()).not.toBe(digest({ body: { y: [1, 2] } })());
  });

  it('counts a text body and the same bytes as one request, whatever holds the bytes', () => {
    const text = '{"amount":100,"note":"café"}';
    const bytes = Buffer.from(text, 'utf8');
    const fromText = digest({ body: text })();
    expect(digest({ body: bytes })()).toBe(fromText);
    expect(digest({ body: new Uint8Array(bytes) })()).toBe(fromText);
    expect(digest({ body: new Uint8Array(bytes).buffer })()).toBe(fromText);
    // A view on part of a larger buffer counts only its own bytes.
    const framed = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]);
    expect(digest({ body: framed.subarray(2, 2 + bytes.length) })()).toBe(fromText);
    expect(
      digest({ body: new DataView(framed.buffer, framed.byteOffset + 2, bytes.length) })(),
    ).toBe(fromText);
    expect(digest({ body: `${text} ` })()).not.toBe(fromText);
    // The bytes of a JSON text and the parsed value are different inputs, never confused.
    expect(digest({ body: { amount: 100, note: 'café' } })()).not.toBe(fromText);
  });

  it('tells a request without a body from one whose JSON body is null', () => {
    expect(digest({ body: null })()).not.toBe(digest({ body: undefined })());
    expect(digest({ body: '' })()).not.toBe(digest({ body: undefined })());
  });

  it('keeps a parsed body that looks like a digest apart from real bytes', () => {
    const bytesDigest = httpRequestFingerprint(facts({ body: 'abc' }), {}) as { body: unknown };
    expect(digest({ body: bytesDigest.body })()).not.toBe(digest({ body: 'abc' })());
  });

  it('fingerprints only what the body selector keeps, given the parsed body', () => {
    const seen: unknown[] = [];
    const choice: FingerprintChoice = {
      body: (body) => {
        seen.push(body);
        return { ...(body as object), client_trace_id: undefined };
      },
    };
    const a = digest({ body: { amount: 1, client_trace_id: 'a' } })(choice);
    const b = digest({ body: { client_trace_id: 'b', amount: 1 } })(choice);
    expect(a).toBe(b);
    expect(digest({ body: { amount: 2, client_trace_id: 'a' } })(choice)).not.toBe(a);
    expect(seen[0]).toEqual({ amount: 1, client_trace_id: 'a' });
    // Without the selector the trace id counts.
    expect(digest({ body: { amount: 1, client_trace_id: 'a' } })()).not.toBe(
      digest({ body: { amount: 1, client_trace_id: 'b' } })(),
    );
  });

  it('counts the chosen headers, by case-insensitive name, and no others', () => {
    const choice = { headers: ['Content-Type', 'accept-language'] };
    const base = { 'content-type': 'application/json', 'accept-language': 'fr' };
    const a = digest({ headers: { ...base, 'user-agent': 'one' } })(choice);
    expect(digest({ headers: { ...base, 'user-agent': 'two' } })(choice)).toBe(a);
    expect(digest({ headers: { ...base, 'accept-language': 'de' } })(choice)).not.toBe(a);
    expect(digest({ headers: { 'content-type': 'application/json' } })(choice)).not.toBe(a);
    // Headers count only when chosen.
    expect(digest({ headers: { 'accept-language': 'de' } })()).toBe(digest({ headers: {} })());
  });

  it('ignores the case of the method, not of the target', () => {
    expect(digest({ method: 'post' })()).toBe(digest({ method: 'POST' })());
    expect(digest({ method: 'PUT' })()).not.toBe(digest({ method: 'POST' })());
    expect(digest({ target: '/Payments' })()).not.toBe(digest({ target: '/payments' })());
    expect(digest({ target: '/payments?a=1' })()).not.toBe(digest({ target: '/payments' })());
  });
});
