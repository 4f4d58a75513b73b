/**
 * The payment service when the provider fails: a 503 that leaves the payment resumable, a retry
 * (or the completer, without one) that finishes it with the same downstream key, and one charge
 * and one paid order whatever failed.
 */
import { describe, expect, it } from 'vitest';
import type { Fault } from '../../examples/payment-provider/fault.ts';
import { uniqueKey } from '../support/ledger-fixture.ts';
import { chargeKey, postPayment, uniqueCustomer, useServiceFixture } from './service-support.ts';

const fx = useServiceFixture();
const payment = (customer: string) => ({ amount_cents: 2500, currency: 'EUR', customer });

/** The provider answers the first charge request of this payment with `fault`. */
function failFirstCharge(key: string, fault: Fault): void {
  fx.provider.setFaultPlan({ rules: [{ fault, keys: [chargeKey(key)], timesPerKey: 1 }] });
}

describe('POST /payments when the provider fails', () => {
  it('answers a provider 5xx 503 with Retry-After; the retry resumes with the same downstream key and charges once', async () => {
    const service = await fx.startService();
    const key = uniqueKey();
    const customer = uniqueCustomer();
    failFirstCharge(key, { mode: 'fail-5xx', status: 503 });

    const failed = await postPayment(service.url, key, payment(customer));
    expect(failed.status).toBe(503);
    expect(failed.headers['content-type']).toBe('application/problem+json');
    expect(failed.json).toMatchObject({ type: '/problems/operation-pending', status: 503 });
    expect(Number(failed.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 0, replays: 0 });
    expect(await fx.orders(customer)).toMatchObject([{ state: 'pending' }]);

    const retried = await postPayment(service.url, key, payment(customer));
    expect(retried.status).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    // Both requests reached the provider under one key: the retry sent the same downstream key.
    expect(fx.chargeStats(key)).toEqual({ requests: 2, charges: 1, replays: 0 });
    expect(fx.provider.stats().customers[customer]?.charges).toBe(1);
    expect(await fx.orders(customer)).toEqual([
      { id: retried.json.id, state: 'paid', charge_id: retried.json.charge_id },
    ]);

    const replayed = await postPayment(service.url, key, payment(customer));
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.bytes.equals(retried.bytes)).toBe(true);
  });

  it('answers 503 when the charge was made but its answer lost; the retry gets that charge, made once', async () => {
    const service = await fx.startService();
    const key = uniqueKey();
    const customer = uniqueCustomer();
    failFirstCharge(key, { mode: 'charge-then-drop' });

    const failed = await postPayment(service.url, key, payment(customer));
    expect(failed.status).toBe(503);
    expect(failed.json).toMatchObject({ type: '/problems/operation-pending' });
    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 1, replays: 0 });
    const made = fx.provider.charges().filter((charge) => charge.customer === customer);
    expect(made).toHaveLength(1);

    const retried = await postPayment(service.url, key, payment(customer));
    expect(retried.status).toBe(201);
    expect(retried.json.charge_id).toBe(made[0]?.id);
    expect(fx.chargeStats(key)).toEqual({ requests: 2, charges: 1, replays: 1 });
    expect(await fx.orders(customer)).toEqual([
      { id: retried.json.id, state: 'paid', charge_id: made[0]?.id },
    ]);
  });

  it('lets the completer finish a payment its client abandoned after a 503, then replays it to the client', async () => {
    const service = await fx.startService({ completerIntervalMs: 50 });
    const key = uniqueKey();
    const customer = uniqueCustomer();
    failFirstCharge(key, { mode: 'charge-then-drop' });

    const failed = await postPayment(service.url, key, payment(customer));
    expect(failed.status).toBe(503);
    await expect
      .poll(async () => (await fx.orders(customer)).map((order) => order.state), {
        timeout: 30_000,
        message: 'the completer marks the order paid without a client retry',
      })
      .toEqual(['paid']);
    const made = fx.provider.charges().filter((charge) => charge.customer === customer);
    expect(made).toHaveLength(1);
    expect(fx.chargeStats(key)).toEqual({ requests: 2, charges: 1, replays: 1 });

    // The client comes back later: the completer's answer, stored, is replayed to it.
    const retried = await postPayment(service.url, key, payment(customer));
    expect(retried.status).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBe('true');
    expect(retried.json).toMatchObject({ state: 'paid', charge_id: made[0]?.id });
    expect(fx.chargeStats(key).requests).toBe(2);
    expect(await fx.orders(customer)).toHaveLength(1);
  });
});
