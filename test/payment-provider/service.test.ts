/**
 * The payment service (examples/payment-provider/service) against a real Postgres and the fake
 * provider in this process: each payment charges once and makes one order, and every answer the
 * service stores is replayed byte for byte.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { problemFor } from '../../examples/payment-provider/service/problems.ts';
import { OperationLeaseLostError } from '../../src/operations/index.ts';
import { waitForLockWaiters } from '../support/barrier.ts';
import { uniqueKey } from '../support/ledger-fixture.ts';
import { postPayment, uniqueCustomer, useServiceFixture } from './service-support.ts';

const fx = useServiceFixture();
const payment = (customer: string, amount_cents = 1999) => ({
  amount_cents,
  currency: 'EUR',
  customer,
});

describe('POST /payments', () => {
  it('charges once, answers 201, and replays it byte for byte with Idempotent-Replayed', async () => {
    const service = await fx.startService();
    const key = uniqueKey();
    const customer = uniqueCustomer();
    const first = await postPayment(service.url, key, payment(customer));
    expect(first.status).toBe(201);
    expect(first.headers['content-type']).toBe('application/json');
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(first.json).toMatchObject({ amount_cents: 1999, customer, state: 'paid' });

    const again = await postPayment(service.url, key, payment(customer));
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.bytes.equals(first.bytes)).toBe(true);

    const orders = await fx.orders(customer);
    expect(orders).toEqual([{ id: first.json.id, state: 'paid', charge_id: first.json.charge_id }]);
    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 1, replays: 0 });
    expect(fx.provider.stats().customers[customer]?.charges).toBe(1);
  });

  it('answers a declined card 402, and replays it without asking the provider again', async () => {
    const service = await fx.startService();
    const key = uniqueKey();
    const customer = uniqueCustomer();
    // The amount the fake provider always declines.
    const declined = payment(customer, 4_000_002);
    const first = await postPayment(service.url, key, declined);
    expect(first.status).toBe(402);
    expect(first.headers['content-type']).toBe('application/problem+json');
    expect(first.json).toMatchObject({ type: '/problems/card-declined', status: 402 });

    const again = await postPayment(service.url, key, declined);
    expect(again.status).toBe(402);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.bytes.equals(first.bytes)).toBe(true);

    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 1, replays: 0 });
    expect(fx.provider.stats().customers[customer]).toMatchObject({ declined: 1, succeeded: 0 });
    // The decline is written with the 402 that answers it.
    expect(await fx.orders(customer)).toEqual([
      { id: first.json.order_id, state: 'declined', charge_id: first.json.charge_id },
    ]);
  });

  it('refuses the key with another body (422), and charges nothing more', async () => {
    const service = await fx.startService();
    const key = uniqueKey();
    const customer = uniqueCustomer();
    expect((await postPayment(service.url, key, payment(customer))).status).toBe(201);
    const reused = await postPayment(service.url, key, payment(customer, 2000));
    expect(reused.status).toBe(422);
    expect(reused.headers['content-type']).toBe('application/problem+json');
    expect(reused.json).toMatchObject({ type: '/problems/key-reused', status: 422 });
    expect(await fx.orders(customer)).toHaveLength(1);
    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 1, replays: 0 });
  });

  it('answers a missing, repeated or malformed key and a bad body 400, without using the key up', async () => {
    const service = await fx.startService();
    const customer = uniqueCustomer();
    const missing = await postPayment(service.url, undefined, payment(customer));
    expect(missing).toMatchObject({ status: 400, json: { type: '/problems/missing-key' } });
    const repeated = await postPayment(service.url, ['a', 'b'], payment(customer));
    expect(repeated).toMatchObject({ status: 400, json: { type: '/problems/invalid-key' } });
    const malformed = await postPayment(service.url, 'x'.repeat(256), payment(customer));
    expect(malformed).toMatchObject({ status: 400, json: { type: '/problems/invalid-key' } });

    const key = uniqueKey();
    const notJson = await postPayment(service.url, key, '{"amount_cents":');
    expect(notJson).toMatchObject({ status: 400, json: { type: '/problems/invalid-body' } });
    const extra = await postPayment(service.url, key, { ...payment(customer), tip: 1 });
    expect(extra).toMatchObject({ status: 400, json: { type: '/problems/invalid-body' } });
    expect(await fx.orders(customer)).toHaveLength(0);
    expect(fx.chargeStats(key).requests).toBe(0);

    // The key was never used: the same key with a valid body makes the payment.
    expect((await postPayment(service.url, key, payment(customer))).status).toBe(201);
    expect(await fx.orders(customer)).toHaveLength(1);
  });

  it('answers a duplicate 409 with Retry-After while the first holds the payment, which then completes once', async () => {
    const service = await fx.startService({ waitTimeoutMs: 200 });
    const key = uniqueKey();
    const customer = uniqueCustomer();
    const { first, duplicate } = await fx.db.connection().execute(async (locked) => {
      await sql`begin`.execute(locked);
      // Conflicts with the order's INSERT: the first attempt waits inside its step, holding
      // the operation's lease.
      await sql`lock table orders in share row exclusive mode`.execute(locked);
      const first = postPayment(service.url, key, payment(customer));
      await waitForLockWaiters(fx.db, 1);
      const duplicate = await postPayment(service.url, key, payment(customer));
      await sql`commit`.execute(locked);
      return { first, duplicate };
    });
    expect(duplicate.status).toBe(409);
    expect(duplicate.json).toMatchObject({ type: '/problems/request-in-progress', status: 409 });
    expect(Number(duplicate.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    expect((await first).status).toBe(201);
    expect(await fx.orders(customer)).toHaveLength(1);
    expect(fx.chargeStats(key)).toEqual({ requests: 1, charges: 1, replays: 0 });
  });

  it('answers a lost lease 409 with Retry-After, as a request in progress', () => {
    const problem = problemFor(new OperationLeaseLostError({ scope: 's', key: 'secret-key' }));
    expect(problem.status).toBe(409);
    expect(problem.headers['retry-after']).toBe('1');
    expect(problem.details.type).toBe('/problems/request-in-progress');
    expect(problem.body).not.toContain('secret-key');
  });

  it('answers another route 404 as problem details', async () => {
    const service = await fx.startService();
    const res = await fetch(`${service.url}/refunds`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ type: '/problems/not-found', status: 404 });
  });
});
