/**
 * runOperation against a real Postgres and a real (fake) payment provider over sockets: one
 * charge per operation whatever fails, resumption from the last recorded step, final outcomes
 * replayed, and fencing that rolls back a paused attempt's writes.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PaymentProvider,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';
import { IdempotencyConflictError, IdempotencyKeyReusedError } from '../../src/index.ts';
import {
  downstreamKey,
  OperationLeaseLostError,
  OperationPendingError,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type PaymentControls, paymentOperation } from './payment-operation.ts';

const fx = useLedgerFixture();
let provider: PaymentProvider;
const controls: PaymentControls = {
  providerUrl: '',
  faults: new Map(),
  orderRuns: new Map(),
};
const operation = paymentOperation(controls);
const SCOPE = 'merchant:m1:create-payment';

beforeAll(async () => {
  provider = await startPaymentProvider();
  controls.providerUrl = provider.url;
});
afterAll(() => provider.close());

const request = { amount_cents: 1999, customer: 'cus_1' };
const run = (key: string, options: { leaseMs?: number; onConcurrent?: 'wait' | 'reject' } = {}) =>
  runOperation(fx.db, operation, { scope: SCOPE, key, request, ...options });
const charges = (key: string) =>
  provider.stats().keys[downstreamKey(SCOPE, key, 'charge')]?.charges ?? 0;
const operationRow = async (key: string) => {
  const { rows } = await sql<{ state: string; fencing_token: string; attempts: number }>`
    select state, fencing_token, attempts from idempotency.operations
     where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  return rows[0];
};

describe('runOperation', () => {
  it('runs each step once, charges once, and replays the final response', async () => {
    const key = uniqueKey();
    const first = await run(key);
    expect(first).toMatchObject({ replayed: false, resumed: false, response: { status: 201 } });
    const again = await run(key);
    expect(again).toEqual({ response: first.response, replayed: true, resumed: false });
    expect(await fx.countPayments(key)).toBe(1);
    expect(charges(key)).toBe(1);
    expect(controls.orderRuns.get(key)).toBe(1);
    expect(await operationRow(key)).toMatchObject({ state: 'finished', fencing_token: '1' });
  });

  it('refuses the key with another request (422)', async () => {
    const key = uniqueKey();
    await run(key);
    await expect(
      runOperation(fx.db, operation, {
        scope: SCOPE,
        key,
        request: { ...request, amount_cents: 5 },
      }),
    ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  });

  it('leaves the operation resumable when the provider fails without charging, and resumes it', async () => {
    const key = uniqueKey();
    controls.faults.set(key, [{ mode: 'fail-5xx', status: 503 }]);
    const failed = await run(key).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(OperationPendingError);
    expect((failed as OperationPendingError).reason).toBe('unknown');
    expect(await operationRow(key)).toMatchObject({ state: 'in_progress' });
    expect(charges(key)).toBe(0);

    // The lease was released: the retry resumes at once, skipping the recorded order.
    const resumed = await run(key);
    expect(resumed).toMatchObject({ replayed: false, resumed: true, response: { status: 201 } });
    expect(controls.orderRuns.get(key)).toBe(1);
    expect(await fx.countPayments(key)).toBe(1);
    expect(charges(key)).toBe(1);
    expect(await operationRow(key)).toMatchObject({ state: 'finished', fencing_token: '2' });
  });

  it('charges once when the answer to a charge was lost: the retry sends the same downstream key', async () => {
    const key = uniqueKey();
    controls.faults.set(key, [{ mode: 'charge-then-drop' }]);
    await expect(run(key)).rejects.toBeInstanceOf(OperationPendingError);
    expect(charges(key)).toBe(1);
    const resumed = await run(key);
    expect(resumed.response).toMatchObject({ status: 201 });
    expect(charges(key)).toBe(1);
    expect(provider.stats().keys[downstreamKey(SCOPE, key, 'charge')]?.replays).toBe(1);
  });

  it('records a declined card as the final response and replays it', async () => {
    const key = uniqueKey();
    const declined = { amount_cents: 4_000_002, customer: 'cus_2' };
    const first = await runOperation(fx.db, operation, { scope: SCOPE, key, request: declined });
    expect(first.response).toMatchObject({ status: 402, declined: true });
    const again = await runOperation(fx.db, operation, { scope: SCOPE, key, request: declined });
    expect(again).toEqual({ response: first.response, replayed: true, resumed: false });
    expect(charges(key)).toBe(1);
    expect(await operationRow(key)).toMatchObject({ state: 'finished' });
  });

  it('answers a duplicate while an attempt holds the lease: 409 with reject, a replay with wait', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    controls.insideOrder = async (heldKey) => {
      if (heldKey !== key) return;
      inside.resolve();
      await release.promise;
    };
    try {
      const first = run(key);
      await inside.promise;
      const rejected = await run(key, { onConcurrent: 'reject' }).catch((error: unknown) => error);
      expect(rejected).toBeInstanceOf(IdempotencyConflictError);
      const waiting = run(key);
      release.resolve();
      const [firstResult, waited] = await Promise.all([first, waiting]);
      expect(waited).toEqual({ response: firstResult.response, replayed: true, resumed: false });
      expect(charges(key)).toBe(1);
    } finally {
      controls.insideOrder = undefined;
    }
  });

  it('shuts out an attempt paused past its lease: its writes roll back, the new holder finishes', async () => {
    const key = uniqueKey();
    // Each holder stops inside its order transaction, after its insert, until released.
    const holders = new Map(
      ['1', '2'].map((token) => [token, { inside: deferred(), release: deferred() }]),
    );
    controls.insideOrder = async (heldKey, fencingToken) => {
      const holder = heldKey === key ? holders.get(fencingToken) : undefined;
      if (!holder) return;
      holder.inside.resolve();
      await holder.release.promise;
    };
    const [first, second] = [holders.get('1'), holders.get('2')] as const;
    if (!first || !second) throw new Error('unreachable');
    try {
      // A long lease, whose heartbeat will not beat during the test: the attempt is as good as a
      // process paused (SIGSTOP) in the middle of its step, which stops its heartbeat too.
      const paused = run(key, { leaseMs: 60_000 }).catch((error: unknown) => error);
      await first.inside.promise;
      // Its lease runs out (by hand, rather than waiting for it), and a retry takes over.
      await sql`update idempotency.operations set lease_expires_at = clock_timestamp()
                 where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
      const taker = run(key);
      await second.inside.promise;
      // The paused attempt wakes up while the new holder is mid-step: its commit is refused.
      first.release.resolve();
      expect(await paused).toBeInstanceOf(OperationLeaseLostError);
      second.release.resolve();
      expect(await taker).toMatchObject({ resumed: true, response: { status: 201 } });
      // The paused attempt's order insert rolled back: one business row, the new holder's.
      expect(await fx.countPayments(key)).toBe(1);
      expect(controls.orderRuns.get(key)).toBe(2);
      expect(charges(key)).toBe(1);
      expect(await operationRow(key)).toMatchObject({ state: 'finished', fencing_token: '2' });
    } finally {
      controls.insideOrder = undefined;
    }
  });
});

describe('cleanup', () => {
  it('deletes finished operations once they expire, with their steps, and never one in progress', async () => {
    const { cleanupExpired } = await import('../../src/index.ts');
    const finished = uniqueKey();
    await runOperation(fx.db, operation, { scope: SCOPE, key: finished, request, ttlMs: 1 });
    const pending = uniqueKey();
    controls.faults.set(pending, [{ mode: 'fail-5xx' }]);
    await expect(run(pending)).rejects.toBeInstanceOf(OperationPendingError);
    await sql`update idempotency.operations set expires_at = clock_timestamp() - interval '1 s'
               where scope = ${SCOPE} and key = ${finished}`.execute(fx.db);

    await cleanupExpired(fx.db);
    expect(await operationRow(finished)).toBeUndefined();
    const { rows } = await sql<{ count: number }>`
      select count(*)::int as count from idempotency.operation_steps where key = ${finished}`.execute(
      fx.db,
    );
    expect(rows[0]?.count).toBe(0);
    expect(await operationRow(pending)).toMatchObject({ state: 'in_progress' });
    // The key is new again: a new request with it executes.
    const again = await run(finished);
    expect(again).toMatchObject({ replayed: false, resumed: false });
  });
});

describe('over HTTP', () => {
  it('answers a pending operation 503 and a lost lease 409, with Retry-After, naming neither key nor scope', async () => {
    const { problemResponseFor } = await import('../../src/http/index.ts');
    const pending = new OperationPendingError({
      scope: SCOPE,
      key: 'secret-key',
      step: 'charge',
      reason: 'unknown',
      cause: new Error('socket hang up'),
      retryAfterMs: 2_500,
    });
    expect(problemResponseFor(pending)).toMatchObject({
      status: 503,
      headers: { 'retry-after': '3' },
      details: { type: 'urn:idempotency-ledger:problem:operation-pending', status: 503 },
    });
    const lost = problemResponseFor(
      new OperationLeaseLostError({ scope: SCOPE, key: 'secret-key' }),
    );
    expect(lost).toMatchObject({
      status: 409,
      headers: { 'retry-after': '1' },
      details: { type: 'urn:idempotency-ledger:problem:request-in-progress' },
    });
    for (const problem of [problemResponseFor(pending), lost]) {
      expect(problem?.body).not.toContain('secret-key');
      expect(problem?.body).not.toContain(SCOPE);
    }
  });
});
