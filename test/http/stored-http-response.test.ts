import { describe, expect, it } from 'vitest';
import {
  type HttpResponseSnapshot,
  httpRequestFingerprint,
  resolveHttpOptions,
  runIdempotentRequest,
  storedHttpResponseSchema,
} from '../../src/http/index.ts';
import { toStoredHttpResponse } from '../../src/http/stored-http-response.ts';
import {
  type IdempotencyError,
  StoredResponseInvalidError,
  withIdempotency,
} from '../../src/index.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const allHeaders = new Set(['content-type']);

function snapshot(body: Uint8Array, headers: HttpResponseSnapshot['headers'] = {}) {
  return { status: 200, headers, body } satisfies HttpResponseSnapshot;
}

const texts: [string, string][] = [
  ['ASCII JSON', '{"id":"pay_1","amount":100}'],
  ['empty', ''],
  ['multi-byte and astral characters', 'café – 東京 – 😀'],
  ['quotes, backslashes, line and paragraph separators', 'a"b\\c\r\n\u2028\u2029\t'],
  ['a byte order mark', '\uFEFF{"bom":true}'],
  ['control characters other than NUL', '\u0001\u001f\u007f'],
];

const binaries: [string, Buffer][] = [
  ['invalid UTF-8', Buffer.from([0xc3, 0x28, 0x61])],
  ['NUL bytes in text', Buffer.from('a\u0000b\u0000', 'utf8')],
  ['a lone 0xFF', Buffer.from([0xff])],
  ['a sequence cut short', Buffer.concat([Buffer.from('price: 5'), Buffer.from([0xe2, 0x82])])],
  ['an encoded surrogate (CESU-8)', Buffer.from([0xed, 0xa0, 0x80])],
  ['a PNG signature', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00])],
];

describe('toStoredHttpResponse and storedHttpResponseSchema', () => {
  it.each(texts)('stores a UTF-8 body (%s) as text and gives back its bytes', (_, text) => {
    const bytes = Buffer.from(text, 'utf8');
    const stored = toStoredHttpResponse(snapshot(bytes), allHeaders);
    expect(stored).toMatchObject({ encoding: 'utf8', body: text });
    const replayed = storedHttpResponseSchema.parse(JSON.parse(JSON.stringify(stored)));
    expect(Buffer.compare(Buffer.from(replayed.body), bytes)).toBe(0);
  });

  it.each(binaries)('stores a body that is not text (%s) as base64, byte for byte', (_, bytes) => {
    const stored = toStoredHttpResponse(snapshot(bytes), allHeaders);
    expect(stored).toMatchObject({ encoding: 'base64', body: bytes.toString('base64') });
    const replayed = storedHttpResponseSchema.parse(JSON.parse(JSON.stringify(stored)));
    expect(Buffer.compare(Buffer.from(replayed.body), bytes)).toBe(0);
  });

  it('stores only the bytes a view covers', () => {
    const framed = Buffer.from('xx{"a":1}yy');
    const stored = toStoredHttpResponse(snapshot(framed.subarray(2, 9)), allHeaders);
    expect(stored.body).toBe('{"a":1}');
    const binary = Buffer.from([0x00, 0xff, 0xfe, 0x00]);
    expect(toStoredHttpResponse(snapshot(binary.subarray(1, 3)), allHeaders).body).toBe(
      Buffer.from([0xff, 0xfe]).toString('base64'),
    );
  });

  it('keeps the allowlisted headers, whatever their case, under lower-case names', () => {
    const { storedHeaders } = resolveHttpOptions(
      {
        db: fx.db,
        scope: () => 's',
        storedHeaders: ['Content-Type', 'X-Request-Id', 'set-cookie'],
      },
      'test',
    );
    const stored = toStoredHttpResponse(
      snapshot(Buffer.from('ok'), {
        'Content-Type': 'text/plain',
        'X-REQUEST-ID': 'r1',
        'set-cookie': ['a=1', 'b=2'],
        'x-secret-trace': 't',
        location: '/elsewhere',
      }),
      storedHeaders,
    );
    expect(stored.headers).toEqual({
      'content-type': 'text/plain',
      'x-request-id': 'r1',
      'set-cookie': ['a=1', 'b=2'],
    });
    const replayed = storedHttpResponseSchema.parse(JSON.parse(JSON.stringify(stored)));
    expect(replayed.headers).toEqual(stored.headers);
    expect(replayed.status).toBe(200);
  });

  it.each([...texts, ...binaries.map(([name, bytes]) => [name, bytes] as const)])(
    'replays %s from Postgres byte for byte',
    async (_, content) => {
      const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
      const key = uniqueKey('stored');
      const options = { scope: 'stored', key, responseSchema: storedHttpResponseSchema };
      const produce = async () => toStoredHttpResponse(snapshot(bytes), allHeaders);
      const first = await withIdempotency(fx.db, options, produce);
      const replay = await withIdempotency(fx.db, options, produce);
      expect(replay.replayed).toBe(true);
      expect(Buffer.compare(Buffer.from(first.response.body), bytes)).toBe(0);
      expect(Buffer.compare(Buffer.from(replay.response.body), bytes)).toBe(0);
    },
  );

  it('refuses a stored value of another shape with StoredResponseInvalidError', async () => {
    const key = uniqueKey('other-shape');
    await withIdempotency(fx.db, { scope: 'shared', key }, async () => ({ ok: true }));
    await expect(
      withIdempotency(
        fx.db,
        { scope: 'shared', key, responseSchema: storedHttpResponseSchema },
        async () => toStoredHttpResponse(snapshot(Buffer.from('x')), allHeaders),
      ),
    ).rejects.toBeInstanceOf(StoredResponseInvalidError);
  });

  it('answers a stored value of another shape with a 500 problem and reports it', async () => {
    const key = uniqueKey('other-shape');
    const facts = {
      method: 'POST',
      target: '/payments',
      keyHeader: key,
      body: { amount: 1 },
      header: () => undefined,
    };
    // Another caller stored a plain value under the same scope, key and request.
    const request = httpRequestFingerprint(facts, {});
    await withIdempotency(fx.db, { scope: 'shared', key, request }, async () => ({ ok: true }));

    const reported: IdempotencyError[] = [];
    const options = resolveHttpOptions(
      { db: fx.db, scope: () => 'shared', onError: (error) => reported.push(error) },
      'test',
    );
    let executed = false;
    const outcome = await runIdempotentRequest(options, {}, facts, async () => {
      executed = true;
      return snapshot(Buffer.from('x'));
    });
    expect(executed).toBe(false);
    expect(outcome.kind).toBe('refused');
    expect(outcome.response.status).toBe(500);
    expect(JSON.parse(Buffer.from(outcome.response.body).toString()).type).toBe(
      'urn:idempotency-ledger:problem:internal-error',
    );
    expect(reported).toHaveLength(1);
    expect(reported[0]).toBeInstanceOf(StoredResponseInvalidError);
  });
});
