/**
 * The conformance kit's own tests: it passes a reference server that keeps the contract, and it
 * fails the same server broken on purpose, one way at a time, in exactly the checks each fault
 * breaks and with a detail that says what went wrong. The example servers are checked in
 * conformance.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  type ContractCheckId,
  type ContractReport,
  checkIdempotencyContract,
  formatContractReport,
} from '../../src/conformance/index.ts';
import { InvalidIdempotencyOptionsError } from '../../src/index.ts';
import { startConformanceTarget } from './support/conformance-target.ts';
import type { Fault } from './support/faulty-payments.ts';

const referenceServer = fileURLToPath(
  new URL('./support/reference-payments-server.ts', import.meta.url),
);
/** A server start, the kit with a crash and a restart, and a stop, on a loaded machine. */
const TARGET_TIMEOUT_MS = 120_000;

function failedChecks(report: ContractReport): ContractCheckId[] {
  return report.checks.filter((check) => check.status === 'failed').map((check) => check.id);
}

describe('checkIdempotencyContract', () => {
  const keepers: { duplicates: string; env: Record<string, string>; conflicts: RegExp }[] = [
    { duplicates: 'wait for the first and replay it', env: {}, conflicts: /, 0 got 409/ },
    // Five rounds of eight duplicates at once always met a request in flight in our runs.
    { duplicates: 'get 409', env: { ON_CONCURRENT: 'reject' }, conflicts: /, [1-9]\d* got 409/ },
  ];
  it.for(keepers)(
    'passes a server that keeps the contract (duplicates in flight $duplicates), every check run',
    { timeout: TARGET_TIMEOUT_MS },
    async ({ env, conflicts }) => {
      const target = await startConformanceTarget(referenceServer, env);
      const report = await checkIdempotencyContract(target.contractOptions());
      expect(report.passed, formatContractReport(report)).toBe(true);
      expect(report.checks.map((check) => [check.id, check.status])).toEqual([
        ['missing-key', 'passed'],
        ['repeated-key-header', 'passed'],
        ['replay', 'passed'],
        ['key-reuse', 'passed'],
        ['concurrent-duplicates', 'passed'],
        ['crash', 'passed'],
        ['keys-in-errors', 'passed'],
      ]);
      const duplicates = report.checks.find((check) => check.id === 'concurrent-duplicates');
      expect(duplicates?.detail).toMatch(conflicts);
      expect(await target.server.stop(), target.server.output()).toBe(0);
    },
  );

  /** Each fault, the checks it must fail (and no others), and what the first of them must say. */
  const broken: { fault: Fault; failed: ContractCheckId[]; detail: RegExp }[] = [
    {
      fault: 'ignore-key',
      failed: [
        'missing-key',
        'repeated-key-header',
        'replay',
        'key-reuse',
        'concurrent-duplicates',
        'crash',
      ],
      detail: /^expected a 400 application\/problem\+json, got status 201 instead of 400: 201/,
    },
    {
      fault: 'replay-other-body',
      failed: ['replay', 'concurrent-duplicates', 'crash'],
      detail:
        /^the retry was not the first response again: it had a body that differs from byte 1:/,
    },
    {
      fault: 'send-before-commit',
      failed: ['crash'],
      detail:
        /succeeded before the crash, but .* was not marked as a replay: the key executed again/,
    },
    {
      fault: 'claim-then-execute',
      failed: ['crash'],
      detail:
        /^timed out after \d+ ms while retrying key \S+ after the restart \(attempt \d+, last answer 409 \(application\/problem\+json\)/,
    },
    {
      fault: 'check-then-insert',
      failed: ['concurrent-duplicates'],
      detail:
        /^(two duplicates succeeded with different responses|\d+ of \d+ successful duplicates lacked Idempotent-Replayed: true)/,
    },
    {
      fault: 'echo-key',
      failed: ['keys-in-errors'],
      detail: /^an error response repeated its request's key/,
    },
  ];
  it.for(broken)(
    'fails a server with the fault $fault in exactly the checks it breaks',
    { timeout: TARGET_TIMEOUT_MS },
    async ({ fault, failed, detail }) => {
      const target = await startConformanceTarget(referenceServer, { FAULT: fault });
      const report = await checkIdempotencyContract({
        ...target.contractOptions(),
        // A key stuck in progress keeps the crash check retrying until its time is up; the time
        // covers a server restart too, which takes seconds on a loaded machine.
        checkTimeoutMs: 15_000,
      });
      const text = formatContractReport(report);
      expect(failedChecks(report), text).toEqual(failed);
      const firstFailure = report.checks.find((check) => check.status === 'failed');
      expect(firstFailure?.detail, text).toMatch(detail);
      expect(await target.server.stop(), target.server.output()).toBe(0);
    },
  );

  it(
    'fails each check that gets no answer in time, and still finishes',
    async () => {
      const target = await startConformanceTarget(referenceServer, { FAULT: 'never-answer' });
      const report = await checkIdempotencyContract({
        ...target.contractOptions(),
        checkTimeoutMs: 500,
      });
      expect(report.checks.map((check) => [check.id, check.status])).toEqual([
        ['missing-key', 'failed'],
        ['repeated-key-header', 'failed'],
        ['replay', 'failed'],
        ['key-reuse', 'failed'],
        ['concurrent-duplicates', 'failed'],
        ['crash', 'failed'],
        ['keys-in-errors', 'skipped'],
      ]);
      for (const check of report.checks.filter((c) => c.status === 'failed')) {
        expect(check.detail).toMatch(/^timed out after 500 ms while \w/);
      }
      expect(await target.server.stop(), target.server.output()).toBe(0);
    },
    TARGET_TIMEOUT_MS,
  );

  it('refuses invalid options before it sends anything', async () => {
    const valid = {
      baseUrl: 'http://127.0.0.1:9',
      path: '/payments',
      body: (n: number) => ({ amount_cents: n }),
    };
    const issuesOf = (options: object) =>
      checkIdempotencyContract({ ...valid, ...options }).then(
        () => 'accepted',
        (error: unknown) =>
          error instanceof InvalidIdempotencyOptionsError ? error.issues : error,
      );
    expect(await issuesOf({ baseUrl: 'ftp://127.0.0.1' })).toEqual([
      'baseUrl: must be an http:// or https:// URL',
    ]);
    expect(await issuesOf({ path: 'payments' })).toEqual(['path: must start with /']);
    expect(await issuesOf({ headers: { 'Idempotency-Key': 'k' } })).toEqual([
      'headers: must not contain Idempotency-Key: the kit sends its own keys',
    ]);
    expect(await issuesOf({ body: () => ({ same: true }) })).toEqual([
      'body: body(0) and body(1) must differ',
    ]);
    expect(await issuesOf({ concurrency: 1 })).toEqual([
      'concurrency: Too small: expected number to be >=2',
    ]);
  });
});
