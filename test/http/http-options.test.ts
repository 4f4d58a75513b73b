import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PROBLEM_TYPE_BASE,
  DEFAULT_REPLAYED_HEADER,
  type HttpIdempotencyOptions,
  isFinalResponse,
  resolveHttpOptions,
} from '../../src/http/index.ts';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_SCHEMA,
  InvalidIdempotencyOptionsError,
} from '../../src/index.ts';
import { useLedgerFixture } from '../support/ledger-fixture.ts';

describe('resolveHttpOptions', () => {
  const fx = useLedgerFixture();
  const scope = () => 'tenant';

  /** The issues `resolveHttpOptions` refuses `options` with; fails if it accepts them. */
  function issuesOf(options: Record<string, unknown>): readonly string[] {
    try {
      resolveHttpOptions(
        { db: fx.db, scope, ...options } as HttpIdempotencyOptions<unknown, unknown>,
        'testAdapter',
      );
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
      const invalid = error as InvalidIdempotencyOptionsError;
      expect(invalid.message).toContain('testAdapter');
      for (const issue of invalid.issues) expect(invalid.message).toContain(issue);
      return invalid.issues;
    }
    throw new Error(`accepted ${Object.keys(options).join(', ')}`);
  }

  it('fills in the defaults', () => {
    const resolved = resolveHttpOptions({ db: fx.db, scope }, 'testAdapter');
    expect(resolved.db).toBe(fx.db);
    expect(resolved.scope).toBe(scope);
    expect(resolved.ledger).toEqual({ schema: DEFAULT_SCHEMA });
    expect([...resolved.storedHeaders]).toEqual(['content-type', 'location']);
    expect(resolved.replayedHeader).toBe(DEFAULT_REPLAYED_HEADER);
    expect(resolved.storeIf).toBe(isFinalResponse);
    expect(resolved.fingerprint).toEqual({});
    expect(resolved.problemTypeBase).toBe(DEFAULT_PROBLEM_TYPE_BASE);
    expect(resolved.maxResponseBytes).toBe(DEFAULT_MAX_RESPONSE_BYTES);
  });

  it('keeps what was given: header names lower case, ledger options for withIdempotency', () => {
    const resolved = resolveHttpOptions(
      {
        db: fx.db,
        scope,
        storedHeaders: ['Content-Type', 'X-Request-Id'],
        replayedHeader: false,
        ttlMs: 60_000,
        onConcurrent: 'reject',
        maxResponseBytes: 1000,
        schema: 'ledger',
        isolationLevel: 'serializable',
        maxAttempts: 3,
      },
      'testAdapter',
    );
    expect([...resolved.storedHeaders]).toEqual(['content-type', 'x-request-id']);
    expect(resolved.replayedHeader).toBe(false);
    expect(resolved.maxResponseBytes).toBe(1000);
    expect(resolved.ledger).toEqual({
      ttlMs: 60_000,
      onConcurrent: 'reject',
      maxResponseBytes: 1000,
      schema: 'ledger',
      isolationLevel: 'serializable',
      maxAttempts: 3,
    });
  });

  it('names a missing database or scope function', () => {
    expect(issuesOf({ db: undefined })).toEqual(['db: must be a Kysely instance']);
    expect(issuesOf({ db: {} })).toEqual(['db: must be a Kysely instance']);
    expect(issuesOf({ scope: undefined })).toEqual(['scope: must be a function']);
    expect(issuesOf({ scope: 'tenant' })).toEqual(['scope: must be a function']);
  });

  it('names each bad header name', () => {
    expect(issuesOf({ storedHeaders: ['content-type', 'bad header'] })).toEqual([
      'storedHeaders.1: must be a header name',
    ]);
    expect(issuesOf({ storedHeaders: 'content-type' })[0]).toMatch(/^storedHeaders: /);
    expect(issuesOf({ replayedHeader: 'Idempotent Replayed' })[0]).toMatch(/^replayedHeader: /);
    expect(issuesOf({ replayedHeader: true })[0]).toMatch(/^replayedHeader: /);
    expect(issuesOf({ replayedHeader: '' })[0]).toMatch(/^replayedHeader: /);
    expect(issuesOf({ fingerprint: { headers: ['accept:'] } })).toEqual([
      'fingerprint.headers.0: must be a header name',
    ]);
  });

  it('names each bad hook and setting', () => {
    expect(issuesOf({ storeIf: true })).toEqual(['storeIf: must be a function']);
    expect(issuesOf({ onError: 'log' })).toEqual(['onError: must be a function']);
    expect(issuesOf({ fingerprint: { body: 'amount' } })).toEqual([
      'fingerprint.body: must be a function',
    ]);
    expect(issuesOf({ fingerprint: { header: ['accept'] } })[0]).toMatch(/^fingerprint: /);
    expect(issuesOf({ problemTypeBase: 42 })[0]).toMatch(/^problemTypeBase: /);
    expect(issuesOf({ maxResponseBytes: 0 })[0]).toMatch(/^maxResponseBytes: /);
    expect(issuesOf({ maxResponseBytes: 1.5 })[0]).toMatch(/^maxResponseBytes: /);
  });

  it('names each bad ledger option at setup, not on the first request', () => {
    const bad = {
      ttlMs: -1,
      onConcurrent: 'never',
      waitTimeoutMs: '10s',
      schema: '',
      isolationLevel: 'snapshot',
      maxAttempts: 0,
    };
    for (const [name, value] of Object.entries(bad)) {
      expect(issuesOf({ [name]: value })[0]).toMatch(new RegExp(`^${name}: `));
    }
    expect(
      issuesOf(bad)
        .map((issue) => issue.split(':')[0])
        .sort(),
    ).toEqual(Object.keys(bad).sort());
  });

  it('names every bad option at once', () => {
    const issues = issuesOf({ scope: undefined, storeIf: 1, storedHeaders: ['a b'] });
    expect(issues.map((issue) => issue.split(':')[0]).sort()).toEqual([
      'scope',
      'storeIf',
      'storedHeaders.0',
    ]);
  });

  it('refuses options that are not an object', () => {
    expect(() => resolveHttpOptions(undefined as never, 'testAdapter')).toThrow(
      InvalidIdempotencyOptionsError,
    );
  });
});
