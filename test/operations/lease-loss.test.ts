/**
 * An attempt that loses its lease while it runs: what it reports, what it may still do, and that
 * it leaves the operation to the newer holder without touching that holder's lease.
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
  type OperationContext,
  OperationLeaseLostError,
  releaseOperation,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type PaymentControls, paymentOperation } from './payment-operation.ts';

const fx = useLedgerFixture();
let provider: PaymentProvider;
const controls: PaymentControls = { providerUrl: '', faults: new Map(), orderRuns: new Map() };
const payment = paymentOperation(controls);
const SCOPE = 'merchant:m4:create-payment';
const request = { amount_cents: 700, customer: 'cus_4' };

beforeAll(async () => {
  provider = await startPaymentProvider();
  controls.providerUrl = provider.url;
});
afterAll(() => provider.close());

const operationRow = async (key: string) => {
  const { rows } = await sql<{ state: string; fencing_token: string; held: boolean }>`
    select state, fencing_token::text as fencing_token, lease_expires_at > clock_timestamp() as held
      from idempotency.operations where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  return rows[0];
};
const recordedSteps = async (key: string) => {
  const { rows } = await sql<{ step: string }>`
    select step from idempotency.operation_steps where scope = ${SCOPE} and key = ${key}
     order by step`.execute(fx.db);
  return rows.map((row) => row.step);
};

it('reports a call cut off by the loss of its lease as the lost lease (409), and records nothing', async () => {
  const key = uniqueKey();
  const chargeKey = downstreamKey(SCOPE, key, 'charge');
  // The provider holds the charge for 5 s; the lease is 300 ms, renewed every 100 ms.
  controls.faults.set(key, [{ mode: 'slow', delayMs: 5_000 }]);
  const attempt = runOperation(fx.db, payment, {
    scope: SCOPE,
    key,
    request,
    leaseMs: 300,
  }).catch((error: unknown) => error);
  await expect
    .poll(() => provider.stats().keys[chargeKey]?.requests ?? 0, { timeout: 30_000 })
    .toBe(1);
  // An operator (or a takeover) raises the token: the next renewal finds the lease gone, and the
  // call's signal aborts.
  expect(await releaseOperation(fx.db, { scope: SCOPE, key })).toBe(true);

  expect(await attempt).toBeInstanceOf(OperationLeaseLostError);
  expect(await recordedSteps(key)).toEqual(['create-order']);
  expect(await operationRow(key)).toMatchObject({ state: 'in_progress', fencing_token: '2' });
});

it('refuses every later step of an attempt whose fenced write found its lease lost, before its code runs', async () => {
  const key = uniqueKey();
  const inside = deferred();
  const release = deferred();
  const ran: string[] = [];
  const operation = defineOperation({
    name: 'lost-then-carries-on',
    async run(op: OperationContext<Database>) {
      try {
        await op.step('order', async (trx) => {
          await trx.insertInto('payments').values({ scope: SCOPE, key, amount: 1 }).execute();
          inside.resolve();
          await release.promise;
          return 'order';
        });
      } catch (error) {
        // Code that swallows a step's failure (to log it, to try another way) and carries on.
        ran.push(error instanceof OperationLeaseLostError ? 'caught lost' : 'caught other');
      }
      await op.call('notify', async () => {
        ran.push('notify called');
        return 'sent';
      });
      return op.finish(async () => {
        ran.push('finish ran');
        return 'done';
      });
    },
  });
  // A long lease: no renewal beats during the test, so only the fenced write can find the loss.
  const attempt = runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request: null,
    leaseMs: 60_000,
  }).catch((error: unknown) => error);
  await inside.promise;
  expect(await releaseOperation(fx.db, { scope: SCOPE, key })).toBe(true);
  release.resolve();

  expect(await attempt).toBeInstanceOf(OperationLeaseLostError);
  expect(ran).toEqual(['caught lost']);
  expect(await fx.countPayments(key)).toBe(0);
  expect(await recordedSteps(key)).toEqual([]);
});

it("leaves the newer holder's lease alone when the shut-out attempt ends", async () => {
  const key = uniqueKey();
  const inside = deferred();
  const release = deferred();
  const taken = deferred();
  const hold = deferred();
  const operation = defineOperation({
    name: 'shut-out',
    async run(op: OperationContext<Database>) {
      await op.step('order', async () => {
        if (op.fencingToken === '1') {
          inside.resolve();
          await release.promise;
        } else {
          taken.resolve();
          await hold.promise;
        }
        return op.fencingToken;
      });
      return op.finish(async () => 'done');
    },
  });
  const first = runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request: null,
    leaseMs: 60_000,
  }).catch((error: unknown) => error);
  await inside.promise;
  await sql`update idempotency.operations set lease_expires_at = clock_timestamp()
             where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  // The newer holder takes over and stays inside its step while the first one ends.
  const second = runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request: null,
    leaseMs: 60_000,
  });
  await taken.promise;
  release.resolve();
  expect(await first).toBeInstanceOf(OperationLeaseLostError);
  expect(await operationRow(key)).toMatchObject({ fencing_token: '2', held: true });
  hold.resolve();
  expect(await second).toMatchObject({ resumed: true, response: 'done' });
});
