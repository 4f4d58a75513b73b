import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyHeaderError,
  type KeyHeaderProblem,
  PROBLEM_TYPES,
  problemResponseFor,
  ResponseNotSentError,
  readIdempotencyKey,
} from '../../src/http/index.ts';
import {
  IdempotencyConflictError,
  IdempotencyError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  StoredResponseInvalidError,
  UnstorableResponseError,
} from '../../src/index.ts';

/** The problem `readIdempotencyKey` refuses `header` with; fails if it accepts it. */
function refusal(header: Parameters<typeof readIdempotencyKey>[0]): {
  problem: KeyHeaderProblem;
  message: string;
} {
  try {
    const key = readIdempotencyKey(header);
    throw new Error(`accepted ${JSON.stringify(header)} as ${JSON.stringify(key)}`);
  } catch (error) {
    if (!(error instanceof IdempotencyKeyHeaderError)) throw error;
    expect(error).toBeInstanceOf(InvalidIdempotencyKeyError);
    expect(error.status).toBe(400);
    return { problem: error.problem, message: error.message };
  }
}

describe('readIdempotencyKey', () => {
  it('reads an RFC 8941 string and a bare value as the same key', () => {
    expect(readIdempotencyKey('"abc"')).toBe('abc');
    expect(readIdempotencyKey('abc')).toBe('abc');
    expect(readIdempotencyKey(['"8e03978e-40d5"'])).toBe('8e03978e-40d5');
  });

  it('unescapes \\" and \\\\ inside a quoted key', () => {
    expect(readIdempotencyKey('"a\\"b"')).toBe('a"b');
    expect(readIdempotencyKey('"a\\\\b"')).toBe('a\\b');
    expect(readIdempotencyKey('"\\\\\\""')).toBe('\\"');
  });

  it('refuses any other escape, a bare quote or backslash inside a quoted key', () => {
    expect(refusal('"a\\nb"').problem).toBe('malformed');
    expect(refusal('"a"b"').problem).toBe('malformed');
    expect(refusal('"a\\"').problem).toBe('malformed');
  });

  it('trims optional whitespace around the value but keeps spaces inside quotes', () => {
    expect(readIdempotencyKey(' \tabc \t')).toBe('abc');
    expect(readIdempotencyKey('  "abc"  ')).toBe('abc');
    expect(readIdempotencyKey('" a b "')).toBe(' a b ');
  });

  it('refuses a missing header', () => {
    expect(refusal(undefined).problem).toBe('missing');
    expect(refusal(null).problem).toBe('missing');
    expect(refusal([]).problem).toBe('missing');
  });

  it('refuses an empty value, whether bare, blank or an empty string', () => {
    expect(refusal('').problem).toBe('malformed');
    expect(refusal(' \t ').problem).toBe('malformed');
    expect(refusal('""').problem).toBe('malformed');
    expect(refusal(['']).problem).toBe('malformed');
  });

  it('accepts 255 characters and refuses 256, counted after unquoting', () => {
    expect(readIdempotencyKey('k'.repeat(255))).toBe('k'.repeat(255));
    expect(readIdempotencyKey(`"${'k'.repeat(255)}"`)).toBe('k'.repeat(255));
    expect(readIdempotencyKey(`"${'\\"'.repeat(255)}"`)).toBe('"'.repeat(255));
    expect(refusal('k'.repeat(256)).problem).toBe('malformed');
    expect(refusal(`"${'k'.repeat(256)}"`).problem).toBe('malformed');
  });

  it('refuses non-ASCII and control characters, bare or quoted', () => {
    expect(refusal('clé').problem).toBe('malformed');
    expect(refusal('"clé"').problem).toBe('malformed');
    // What Node's latin1 decoding makes of UTF-8 bytes.
    expect(refusal(Buffer.from('clé', 'utf8').toString('latin1')).problem).toBe('malformed');
    expect(refusal('a\u0000b').problem).toBe('malformed');
    expect(refusal('"a\tb"').problem).toBe('malformed');
  });

  it('refuses a header sent twice, as two values or joined into a list of strings', () => {
    expect(refusal(['a', 'b']).problem).toBe('repeated');
    expect(refusal(['"a"', '"a"']).problem).toBe('repeated');
    expect(refusal('"a", "b"').problem).toBe('repeated');
    expect(refusal('"a","b"').problem).toBe('repeated');
    expect(refusal('"a", b').problem).toBe('repeated');
  });

  it('recognises a joined list whose first string holds an escaped quote', () => {
    expect(refusal('"a\\"b", "c"').problem).toBe('repeated');
    expect(refusal('"a\\\\", "c"').problem).toBe('repeated');
  });

  it('takes a bare value whole, commas included: only quoted keys can be told apart once joined', () => {
    expect(readIdempotencyKey('a, b')).toBe('a, b');
  });

  it('refuses an unterminated quote', () => {
    expect(refusal('"abc').problem).toBe('malformed');
    expect(refusal('"').problem).toBe('malformed');
  });

  it('refuses a string followed by parameters rather than dropping them', () => {
    expect(refusal('"a";x=1').problem).toBe('malformed');
    expect(refusal('"a" ; x=1').problem).toBe('malformed');
  });

  it('never puts the value in the message', () => {
    const secret = 'sk_secret_0123';
    const headers = [
      `${secret}é`,
      `"${secret}`,
      `"${secret}";x=1`,
      `"${secret}", "${secret}"`,
      [secret, secret],
      secret.repeat(30),
    ];
    for (const header of headers) {
      const { message } = refusal(header);
      expect(message).not.toContain(secret);
      expect(message).not.toContain('sk_');
    }
  });
});

describe('problemResponseFor', () => {
  const scope = 'merchant:acme-secret-tenant';
  const key = 'sk_live_key_0001';
  const cases: [IdempotencyError, string, number][] = [
    [
      new IdempotencyKeyHeaderError({ problem: 'missing', message: `header ${key}` }),
      'missing-key',
      400,
    ],
    [
      new IdempotencyKeyHeaderError({ problem: 'repeated', message: `header ${key}` }),
      'invalid-key',
      400,
    ],
    [
      new IdempotencyKeyHeaderError({ problem: 'malformed', message: `header ${key}` }),
      'invalid-key',
      400,
    ],
    [new InvalidIdempotencyKeyError({ message: `bad ${key}`, scope, key }), 'invalid-key', 400],
    [new IdempotencyKeyReusedError({ scope, key }), 'key-reused', 422],
    [new IdempotencyConflictError({ scope, key, reason: 'in_flight' }), 'request-in-progress', 409],
    [
      new IdempotencyConflictError({ scope, key, reason: 'wait_timeout' }),
      'request-in-progress',
      409,
    ],
    [
      new UnstorableResponseError({ scope, key, reason: 'too_large', message: `too big ${key}` }),
      'response-not-storable',
      500,
    ],
    [
      new StoredResponseInvalidError({ scope, key, cause: new Error(`select ${key}`) }),
      'internal-error',
      500,
    ],
    [
      new LedgerSchemaError({
        schema: 'idempotency',
        problem: 'missing',
        message: `relation "idempotency.ledger" does not exist; scope ${scope}`,
        cause: Object.assign(new Error('select * from idempotency.ledger'), { code: '42P01' }),
      }),
      'internal-error',
      500,
    ],
    [
      new InvalidIdempotencyOptionsError({ message: `scope ${scope}`, issues: [scope] }),
      'internal-error',
      500,
    ],
    [new ResponseNotSentError({ scope, key }), 'internal-error', 500],
    [new IdempotencyError({ code: 'other', message: `${key} ${scope}` }), 'internal-error', 500],
  ];

  it.each(cases)('answers %o with its problem type and status', (error, slug, status) => {
    const problem = problemResponseFor(error);
    expect(problem?.status).toBe(status);
    expect(problem?.details).toEqual({
      type: `urn:idempotency-ledger:problem:${slug}`,
      status,
      title: PROBLEM_TYPES[slug as keyof typeof PROBLEM_TYPES].title,
      detail: PROBLEM_TYPES[slug as keyof typeof PROBLEM_TYPES].detail,
    });
    expect(problem?.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(problem?.body ?? '')).toEqual(problem?.details);
  });

  it.each(cases)('keeps key, scope, SQL and stack out of the body of %o', (error) => {
    const body = problemResponseFor(error)?.body ?? '';
    for (const secret of [key, scope, 'acme', 'select', 'idempotency.ledger', 'at ', '42P01']) {
      expect(body).not.toContain(secret);
    }
    expect(body).not.toContain(error.message);
  });

  it('asks for a retry after whole seconds, at least one, on a 409', () => {
    const retryAfter = (retryAfterMs: number) =>
      problemResponseFor(
        new IdempotencyConflictError({ scope, key, reason: 'in_flight', retryAfterMs }),
      )?.headers['retry-after'];
    expect(retryAfter(1000)).toBe('1');
    expect(retryAfter(1)).toBe('1');
    expect(retryAfter(0)).toBe('1');
    expect(retryAfter(1001)).toBe('2');
    expect(retryAfter(30_000)).toBe('30');
    expect(retryAfter(-5000)).toBe('1');
    expect(retryAfter(Number.NaN)).toBe('1');
    expect(retryAfter(Number.POSITIVE_INFINITY)).toBe('1');
    expect(
      problemResponseFor(new IdempotencyConflictError({ scope, key, reason: 'in_flight' })),
    ).toMatchObject({ headers: { 'retry-after': '1' } });
  });

  it('sends Retry-After on a 409 only', () => {
    for (const [error, , status] of cases) {
      const headers = problemResponseFor(error)?.headers ?? {};
      expect('retry-after' in headers).toBe(status === 409);
    }
  });

  it("leaves errors that are not the library's to the framework", () => {
    expect(problemResponseFor(new Error('boom'))).toBeUndefined();
    expect(problemResponseFor(Object.assign(new Error('x'), { code: '40001' }))).toBeUndefined();
    expect(problemResponseFor({ status: 409, code: 'conflict' })).toBeUndefined();
    expect(problemResponseFor(undefined)).toBeUndefined();
    expect(problemResponseFor('conflict')).toBeUndefined();
  });

  it('prefixes the type with a custom base', () => {
    const problem = problemResponseFor(
      new IdempotencyKeyReusedError({ scope, key }),
      'https://api.example.com/problems/',
    );
    expect(problem?.details.type).toBe('https://api.example.com/problems/key-reused');
    expect(JSON.parse(problem?.body ?? '').type).toBe(
      'https://api.example.com/problems/key-reused',
    );
  });
});
