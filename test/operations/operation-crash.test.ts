/**
 * A process SIGKILLed while its operation's charge is in flight: the operation is left in
 * progress, its lease runs out, and the client's retry resumes it, charging once (the provider
 * deduplicates on the downstream key) and writing one business row.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type PaymentProvider,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';
import { downstreamKey, OperationPendingError, runOperation } from '../../src/operations/index.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { paymentOperation } from './payment-operation.ts';

const fx = useLedgerFixture();
let provider: PaymentProvider;
const SCOPE = 'merchant:m2:create-payment';

beforeAll(async () => {
  provider = await startPaymentProvider();
});
afterAll(() => provider.close());

it('resumes an operation whose process was killed mid-charge, and charges once', async () => {
  const key = uniqueKey();
  const chargeKey = downstreamKey(SCOPE, key, 'charge');
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(new URL('./support/operation-child.ts', import.meta.url)),
      fx.url,
      provider.url,
      SCOPE,
      key,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = once(child, 'exit');
  await expect
    .poll(() => provider.stats().keys[chargeKey]?.requests ?? 0, {
      timeout: 30_000,
      message: "the child's charge to reach the provider (which holds it 1.5 s)",
    })
    .toBe(1);
  child.kill('SIGKILL');
  await exited;

  const operation = paymentOperation({
    providerUrl: provider.url,
    faults: new Map(),
    orderRuns: new Map(),
  });
  const retry = () =>
    runOperation(fx.db, operation, {
      scope: SCOPE,
      key,
      request: { amount_cents: 1999, customer: 'cus_1' },
    }).then(
      (result) => result,
      (error: unknown) => {
        // The provider still holds the key while the slow charge finishes: retry, as a client would.
        if (error instanceof OperationPendingError) return undefined;
        throw error;
      },
    );
  await expect
    .poll(retry, { timeout: 30_000, interval: 200, message: 'the retry to resume and finish' })
    .toMatchObject({ replayed: false, resumed: true, response: { status: 201 } });
  expect(provider.stats().keys[chargeKey]?.charges).toBe(1);
  // And no charge under any other key: every attempt sent the same downstream key.
  expect(provider.stats().totals.charges).toBe(1);
  expect(await fx.countPayments(key)).toBe(1);
  expect(await retry()).toMatchObject({ replayed: true });
});
