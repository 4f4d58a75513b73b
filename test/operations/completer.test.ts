/**
 * The completer resumes abandoned operations without their clients, from the request stored at
 * their start; operators list the operations in progress and release one.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type PaymentProvider,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';
import {
  defineOperation,
  downstreamKey,
  listOperationsInProgress,
  type OperationContext,
  OperationLeaseLostError,
  OperationPendingError,
  releaseOperation,
  resumeAbandonedOperations,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type PaymentControls, paymentOperation } from './payment-operation.ts';

const fx = useLedgerFixture();
let provider: PaymentProvider;
const controls: PaymentControls = { providerUrl: '', faults: new Map(), orderRuns: new Map() };
const operation = paymentOperation(controls);
const SCOPE = 'merchant:m3:create-payment';
const request = { amount_cents: 2500, customer: 'cus_3' };

beforeAll(async () => {
  provider = await startPaymentProvider();
  controls.providerUrl = provider.url;
});
afterAll(() => provider.close());

it('resumes an abandoned operation from its stored request, once, and the client then replays it', async () => {
  const key = uniqueKey();
  controls.faults.set(key, [{ mode: 'charge-then-drop' }]);
  await expect(
    runOperation(fx.db, operation, { scope: SCOPE, key, request }),
  ).rejects.toBeInstanceOf(OperationPendingError);
  const other = defineOperation({ name: 'other', run: async () => 'never' });
  expect(await resumeAbandonedOperations(fx.db, { operations: [other] })).toMatchObject({
    found: 0,
  });

  const pass = await resumeAbandonedOperations(fx.db, { operations: [operation] });
  expect(pass).toEqual({ found: 1, finished: 1, pending: 0, skipped: 0, failed: 0 });
  expect(provider.stats().keys[downstreamKey(SCOPE, key, 'charge')]?.charges).toBe(1);
  expect(await fx.countPayments(key)).toBe(1);
  const client = await runOperation(fx.db, operation, { scope: SCOPE, key, request });
  expect(client).toMatchObject({ replayed: true, response: { status: 201 } });
  expect(await resumeAbandonedOperations(fx.db, { operations: [operation] })).toMatchObject({
    found: 0,
  });
});

it('leaves an operation whose lease is live to its holder, lists it, and releases it on demand', async () => {
  const key = uniqueKey();
  const inside = deferred();
  const release = deferred();
  controls.insideOrder = async (heldKey) => {
    if (heldKey !== key) return;
    inside.resolve();
    await release.promise;
  };
  try {
    const holder = runOperation(fx.db, operation, {
      scope: SCOPE,
      key,
      request,
      leaseMs: 60_000,
    }).catch((error: unknown) => error);
    await inside.promise;
    expect(await resumeAbandonedOperations(fx.db, { operations: [operation] })).toMatchObject({
      found: 0,
    });
    const listed = (await listOperationsInProgress(fx.db)).find((op) => op.key === key);
    expect(listed).toMatchObject({ scope: SCOPE, name: 'create-payment', attempts: 1, steps: [] });
    expect(listed?.leaseRemainingMs).toBeGreaterThan(0);

    expect(await releaseOperation(fx.db, { scope: SCOPE, key })).toBe(true);
    // The holder wakes up to find its token outdated: nothing it was committing commits.
    release.resolve();
    expect(await holder).toBeInstanceOf(OperationLeaseLostError);
    expect(await fx.countPayments(key)).toBe(0);
    const released = (await listOperationsInProgress(fx.db)).find((op) => op.key === key);
    expect(released).toMatchObject({ leaseRemainingMs: null, fencingToken: '2' });
    expect(released?.ageMs).toBeGreaterThanOrEqual(0);

    const pass = await resumeAbandonedOperations(fx.db, { operations: [operation] });
    expect(pass).toMatchObject({ found: 1, finished: 1 });
    expect(await fx.countPayments(key)).toBe(1);
    const { rows } = await sql<{ fencing_token: string }>`
      select fencing_token::text from idempotency.operations where key = ${key}`.execute(fx.db);
    expect(rows[0]?.fencing_token).toBe('3');
    expect(await releaseOperation(fx.db, { scope: SCOPE, key })).toBe(false);
  } finally {
    controls.insideOrder = undefined;
  }
});

it('stops a pass at the next operation once its signal aborts, leaving the rest in progress', async () => {
  const controller = new AbortController();
  const abandoned = new Set<string>();
  const ran: string[] = [];
  const abortable = defineOperation({
    name: 'abortable',
    async run(op: OperationContext<Database>) {
      if (!abandoned.has(op.key)) {
        // Its client's attempt: a call fails, the operation is left in progress, lease released.
        abandoned.add(op.key);
        await op.call('notify', async () => {
          throw new Error('the downstream service is down');
        });
      }
      ran.push(op.key);
      // The shutdown arrives while the completer runs this one: it finishes, no other starts.
      controller.abort();
      return op.finish(async () => ({ done: op.key }));
    },
  });
  const keys = [uniqueKey(), uniqueKey(), uniqueKey()];
  for (const key of keys) {
    await expect(
      runOperation(fx.db, abortable, { scope: SCOPE, key, request: null }),
    ).rejects.toBeInstanceOf(OperationPendingError);
  }
  const pass = await resumeAbandonedOperations(fx.db, {
    operations: [abortable],
    signal: controller.signal,
  });
  expect(pass).toEqual({ found: 3, finished: 1, pending: 0, skipped: 0, failed: 0 });
  expect(ran).toHaveLength(1);
  const left = await listOperationsInProgress(fx.db);
  expect(left.filter((op) => keys.includes(op.key))).toHaveLength(2);
  // Aborted from the start, a pass runs nothing.
  expect(
    await resumeAbandonedOperations(fx.db, { operations: [abortable], signal: controller.signal }),
  ).toMatchObject({ finished: 0, pending: 0, skipped: 0, failed: 0 });
  expect(ran).toHaveLength(1);
});
