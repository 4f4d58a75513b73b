/**
 * The provider's idempotency contract, as Stripe's: one charge per key, the first response
 * replayed byte for byte, another body refused, a decline stored like a success.
 */
import { describe, expect, it } from 'vitest';
import { fetchProviderStats } from '../../examples/payment-provider/admin-client.ts';
import { rawRequest } from '../http/support/raw-http.ts';
import { CHARGE, postCharge, useProviders } from './support.ts';

const startProvider = useProviders();

describe('POST /v1/charges', () => {
  it('creates one charge per key and replays its response byte for byte', async () => {
    const provider = await startProvider();
    const first = await postCharge(provider.url, { key: 'order-1' });
    const retry = await postCharge(provider.url, { key: 'order-1' });

    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({
      id: expect.stringMatching(/^ch_/),
      ...CHARGE,
      status: 'succeeded',
      created: expect.any(Number),
    });
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(retry.status).toBe(200);
    expect(retry.bytes.equals(first.bytes)).toBe(true);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.headers.get('original-request')).toBe(first.headers.get('request-id'));
    expect(provider.charges()).toEqual([first.json]);
    expect((await fetchProviderStats(provider.url)).keys['order-1']).toEqual({
      requests: 2,
      charges: 1,
      replays: 1,
      mismatches: 0,
      inProgress: 0,
      invalid: 0,
      faults: {},
    });
  });

  it('replays a retry that lists the same parameters in another order', async () => {
    const provider = await startProvider();
    const first = await postCharge(provider.url, { key: 'order-2' });
    const reordered = await postCharge(provider.url, {
      key: 'order-2',
      body: `{ "customer": "${CHARGE.customer}", "currency": "EUR", "amount_cents": 1999 }`,
    });
    expect(reordered.bytes.equals(first.bytes)).toBe(true);
    expect(provider.stats().totals.charges).toBe(1);
  });

  it('answers 422 to the same key with another body, and still replays the first', async () => {
    const provider = await startProvider();
    const first = await postCharge(provider.url, { key: 'order-3' });
    const other = await postCharge(provider.url, {
      key: 'order-3',
      body: { ...CHARGE, amount_cents: 2000 },
    });
    const retry = await postCharge(provider.url, { key: 'order-3' });

    expect(other.status).toBe(422);
    expect(other.json).toMatchObject({
      error: { type: 'idempotency_error', code: 'idempotency_key_reused' },
    });
    expect(retry.bytes.equals(first.bytes)).toBe(true);
    const stats = await fetchProviderStats(provider.url);
    expect(stats.keys['order-3']).toMatchObject({ requests: 3, charges: 1, mismatches: 1 });
    expect(stats.totals.charges).toBe(1);
  });

  it('refuses a charge without an Idempotency-Key (400), and charges nothing', async () => {
    const provider = await startProvider();
    const response = await postCharge(provider.url, {});
    expect(response.status).toBe(400);
    expect(response.json).toMatchObject({ error: { code: 'idempotency_key_required' } });
    expect((await fetchProviderStats(provider.url)).totals).toMatchObject({
      requests: 1,
      missingKey: 1,
      charges: 0,
    });
  });

  it('refuses an Idempotency-Key header sent twice, without quoting either value', async () => {
    const provider = await startProvider();
    const response = await rawRequest(provider.port, {
      path: '/v1/charges',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': ['secret-a', 'secret-b'],
      },
      body: JSON.stringify(CHARGE),
    });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body.toString())).toMatchObject({
      error: { code: 'idempotency_key_invalid' },
    });
    expect(response.body.toString()).not.toContain('secret');
    expect(provider.stats().totals.charges).toBe(0);
  });

  it('refuses an invalid body (400) without storing it: the key stays free', async () => {
    const provider = await startProvider();
    const invalid = await postCharge(provider.url, {
      key: 'order-4',
      body: { ...CHARGE, amount_cents: 12.5 },
    });
    const notJson = await postCharge(provider.url, { key: 'order-4', body: '{"amount_cents":' });
    const valid = await postCharge(provider.url, { key: 'order-4' });

    expect(invalid.status).toBe(400);
    expect(invalid.json).toMatchObject({ error: { type: 'invalid_request_error' } });
    expect(notJson.status).toBe(400);
    expect(valid.status).toBe(200);
    expect(valid.headers.get('idempotent-replayed')).toBeNull();
    expect(provider.stats().keys['order-4']).toMatchObject({ requests: 3, invalid: 2, charges: 1 });
  });

  it.each([
    ['the declined amount', { ...CHARGE, amount_cents: 4_000_002 }],
    ['the declined customer', { ...CHARGE, customer: 'declined' }],
  ])('declines %s with a 402, stores the decline and replays it', async (_, body) => {
    const provider = await startProvider();
    const first = await postCharge(provider.url, { key: 'order-5', body });
    const retry = await postCharge(provider.url, { key: 'order-5', body });

    expect(first.status).toBe(402);
    expect(first.json).toMatchObject({
      error: {
        type: 'card_error',
        code: 'card_declined',
        charge: { id: expect.stringMatching(/^ch_/), ...body, status: 'declined' },
      },
    });
    expect(retry.status).toBe(402);
    expect(retry.bytes.equals(first.bytes)).toBe(true);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const stats = await fetchProviderStats(provider.url);
    expect(stats.keys['order-5']).toMatchObject({ requests: 2, charges: 1, replays: 1 });
    expect(stats.totals).toMatchObject({ charges: 1, declined: 1, succeeded: 0 });
    expect(stats.customers[body.customer]).toEqual({
      charges: 1,
      succeeded: 0,
      declined: 1,
      succeededAmountCents: 0,
    });
  });

  it('makes one charge for concurrent requests with one key, all answered alike', async () => {
    const provider = await startProvider();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => postCharge(provider.url, { key: 'order-6' })),
    );
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(response.bytes.equals(responses[0]?.bytes as Buffer)).toBe(true);
    }
    expect(provider.stats().keys['order-6']).toMatchObject({
      requests: 20,
      charges: 1,
      replays: 19,
    });
  });

  it('keeps keys that name Object.prototype members apart', async () => {
    const provider = await startProvider();
    for (const key of ['__proto__', 'constructor', 'toString']) {
      expect((await postCharge(provider.url, { key })).status).toBe(200);
      expect((await postCharge(provider.url, { key })).headers.get('idempotent-replayed')).toBe(
        'true',
      );
    }
    const stats = await fetchProviderStats(provider.url);
    expect(stats.totals.charges).toBe(3);
    for (const key of ['__proto__', 'constructor', 'toString']) {
      expect(Object.hasOwn(stats.keys, key)).toBe(true);
      expect(stats.keys[key]).toMatchObject({ requests: 2, charges: 1 });
    }
  });

  it('counts charges per customer across keys', async () => {
    const provider = await startProvider();
    await postCharge(provider.url, { key: 'a' });
    await postCharge(provider.url, { key: 'b', body: { ...CHARGE, amount_cents: 1 } });
    await postCharge(provider.url, { key: 'b', body: { ...CHARGE, amount_cents: 1 } });
    expect(provider.stats().customers[CHARGE.customer]).toEqual({
      charges: 2,
      succeeded: 2,
      declined: 0,
      succeededAmountCents: 2000,
    });
  });

  it('answers 404 elsewhere', async () => {
    const provider = await startProvider();
    expect((await fetch(`${provider.url}/v1/refunds`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${provider.url}/v1/charges`)).status).toBe(404);
  });
});
