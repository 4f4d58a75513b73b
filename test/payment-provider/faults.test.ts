/**
 * Each fault does what it says, whether a request asks for it (Provider-Fault header) or a plan
 * sent to `POST /_faults` picks it; charges are counted through `GET /_stats`.
 */
import { describe, expect, it } from 'vitest';
import {
  clearProviderFaultPlan,
  fetchProviderStats,
  setProviderFaultPlan,
} from '../../examples/payment-provider/admin-client.ts';
import type { FaultPlanInput } from '../../examples/payment-provider/fault-plan.ts';
import { postCharge, useProviders } from './support.ts';

const startProvider = useProviders();

describe('faults asked for by a request', () => {
  it.each([
    ['fail-5xx', 500],
    ['fail-5xx; status=503', 503],
  ])('%s answers %i without charging; a retry charges', async (fault, status) => {
    const provider = await startProvider();
    const failed = await postCharge(provider.url, { key: 'k', fault });
    expect(failed.status).toBe(status);
    expect(failed.json).toMatchObject({ error: { type: 'api_error' } });
    expect((await fetchProviderStats(provider.url)).keys.k).toMatchObject({
      charges: 0,
      faults: { 'fail-5xx': 1 },
    });

    const retry = await postCharge(provider.url, { key: 'k' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect((await fetchProviderStats(provider.url)).keys.k?.charges).toBe(1);
  });

  it('timeout reads the request and never answers, without charging', async () => {
    const provider = await startProvider();
    const client = new AbortController();
    let settled = false;
    const hung = postCharge(provider.url, { key: 'k', fault: 'timeout', signal: client.signal });
    const outcome = hung.then(
      () => 'answered',
      () => 'failed',
    );
    void outcome.then(() => (settled = true));
    await expect
      .poll(async () => (await fetchProviderStats(provider.url)).keys.k?.faults.timeout, {
        timeout: 10_000,
        message: 'the provider read the request',
      })
      .toBe(1);
    // Another key is served meanwhile, and still no answer to the first.
    expect((await postCharge(provider.url, { key: 'other' })).status).toBe(200);
    expect(settled).toBe(false);
    expect((await fetchProviderStats(provider.url)).keys.k?.charges).toBe(0);

    client.abort();
    expect(await outcome).toBe('failed');
    const retry = await postCharge(provider.url, { key: 'k' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });

  it('timeout leaves the request unanswered until the provider closes', async () => {
    const provider = await startProvider();
    const hung = postCharge(provider.url, { key: 'k', fault: 'timeout' });
    const outcome = hung.then(
      () => 'answered',
      () => 'failed',
    );
    await expect.poll(() => provider.stats().keys.k?.faults.timeout, { timeout: 10_000 }).toBe(1);
    await provider.close();
    expect(await outcome).toBe('failed');
  });

  it('charge-then-drop charges, then drops the connection; a retry replays the charge', async () => {
    const provider = await startProvider();
    await expect(postCharge(provider.url, { key: 'k', fault: 'charge-then-drop' })).rejects.toThrow(
      TypeError,
    );
    expect((await fetchProviderStats(provider.url)).keys.k).toMatchObject({
      charges: 1,
      faults: { 'charge-then-drop': 1 },
    });

    const retry = await postCharge(provider.url, { key: 'k' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.json).toEqual(provider.charges()[0]);
    expect((await fetchProviderStats(provider.url)).keys.k).toMatchObject({
      charges: 1,
      replays: 1,
    });
  });

  it('fail-after-charge-5xx charges, then answers 500; a retry replays the charge', async () => {
    const provider = await startProvider();
    const failed = await postCharge(provider.url, { key: 'k', fault: 'fail-after-charge-5xx' });
    expect(failed.status).toBe(500);
    expect((await fetchProviderStats(provider.url)).keys.k?.charges).toBe(1);

    const retry = await postCharge(provider.url, { key: 'k' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.json).toEqual(provider.charges()[0]);
  });

  it('slow answers normally after the delay', async () => {
    const provider = await startProvider();
    const started = performance.now();
    const response = await postCharge(provider.url, { key: 'k', fault: 'slow; delayMs=300' });
    // A lower bound only: a timer never fires early, however loaded the machine.
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(response.status).toBe(200);
    expect(provider.stats().keys.k).toMatchObject({ charges: 1, faults: { slow: 1 } });
  });

  it('slow holds its key: a request with the key meanwhile gets 409, and nothing is charged twice', async () => {
    const provider = await startProvider();
    const first = postCharge(provider.url, { key: 'k', fault: 'slow; delayMs=60000' }).then(
      () => 'answered',
      () => 'failed',
    );
    await expect.poll(() => provider.stats().keys.k?.faults.slow, { timeout: 10_000 }).toBe(1);
    const duplicate = await postCharge(provider.url, { key: 'k' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.json).toMatchObject({ error: { code: 'idempotency_key_in_use' } });
    expect(provider.stats().keys.k).toMatchObject({ charges: 0, inProgress: 1 });
    // Closing drops the request still waiting: it is never processed.
    await provider.close();
    expect(await first).toBe('failed');
    expect(provider.stats().keys.k?.charges).toBe(0);
  });

  it('refuses a malformed Provider-Fault header (400) without charging', async () => {
    const provider = await startProvider();
    for (const fault of ['explode', 'slow', 'slow; delayMs=abc', 'fail-5xx; status=502']) {
      const response = await postCharge(provider.url, { key: 'k', fault });
      expect(response.status, fault).toBe(400);
    }
    expect(provider.stats().keys.k).toMatchObject({ requests: 4, invalid: 4, charges: 0 });
  });
});

describe('fault plans sent to POST /_faults', () => {
  it('hits the next N requests, then is spent', async () => {
    const provider = await startProvider();
    const set = await setProviderFaultPlan(provider.url, {
      rules: [{ fault: { mode: 'fail-5xx', status: 503 }, times: 2 }],
    });
    expect(set).toEqual({
      seed: 0,
      rules: [{ fault: { mode: 'fail-5xx', status: 503 }, times: 2, hits: 0 }],
    });
    const statuses = [];
    for (const key of ['a', 'b', 'c', 'a']) {
      statuses.push((await postCharge(provider.url, { key })).status);
    }
    expect(statuses).toEqual([503, 503, 200, 200]);
    const plan = await (await fetch(`${provider.url}/_faults`)).json();
    expect(plan).toMatchObject({ rules: [{ times: 2, hits: 2 }] });
    expect((await fetchProviderStats(provider.url)).totals).toMatchObject({
      charges: 2,
      faults: { 'fail-5xx': 2 },
    });
  });

  it('hits only the keys it names, timesPerKey times each', async () => {
    const provider = await startProvider();
    await setProviderFaultPlan(provider.url, {
      rules: [
        {
          fault: { mode: 'charge-then-drop' },
          keys: ['order-17', 'order-18'],
          timesPerKey: 1,
        },
      ],
    });
    const outcome = (key: string) =>
      postCharge(provider.url, { key }).then(
        (response) => response.headers.get('idempotent-replayed') ?? String(response.status),
        () => 'dropped',
      );
    const seen = [];
    for (const key of ['order-16', 'order-17', 'order-17', 'order-18', 'order-18']) {
      seen.push(await outcome(key));
    }
    expect(seen).toEqual(['200', 'dropped', 'true', 'dropped', 'true']);
    const stats = await fetchProviderStats(provider.url);
    expect(stats.totals.charges).toBe(3);
    expect(stats.keys['order-17']).toMatchObject({ requests: 2, charges: 1, replays: 1 });
  });

  it('hits a seeded share of requests, the same ones for the same seed', async () => {
    const plan: FaultPlanInput = {
      seed: 1234,
      rules: [{ fault: { mode: 'fail-5xx' }, probability: 0.5 }],
    };
    const run = async () => {
      const provider = await startProvider({ faultPlan: plan });
      const failed = [];
      for (let i = 0; i < 40; i++) {
        if ((await postCharge(provider.url, { key: `k${i}` })).status === 500) failed.push(i);
      }
      expect(provider.stats().totals.charges).toBe(40 - failed.length);
      return failed;
    };
    const first = await run();
    const second = await run();
    expect(second).toEqual(first);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(40);

    const other = await startProvider({ faultPlan: { ...plan, seed: 4321 } });
    const failedOther = [];
    for (let i = 0; i < 40; i++) {
      if ((await postCharge(other.url, { key: `k${i}` })).status === 500) failedOther.push(i);
    }
    expect(failedOther).not.toEqual(first);
  });

  it('tries rules in order; a request that asks for a fault does not use the plan', async () => {
    const provider = await startProvider();
    provider.setFaultPlan({
      rules: [
        { fault: { mode: 'fail-after-charge-5xx' }, keys: ['vip'], times: 1 },
        { fault: { mode: 'fail-5xx', status: 503 }, times: 1 },
      ],
    });
    expect((await postCharge(provider.url, { key: 'x', fault: 'slow; delayMs=0' })).status).toBe(
      200,
    );
    expect((await postCharge(provider.url, { key: 'vip' })).status).toBe(500);
    expect((await postCharge(provider.url, { key: 'y' })).status).toBe(503);
    expect((await postCharge(provider.url, { key: 'z' })).status).toBe(200);
    expect(provider.faultPlan().rules.map((rule) => rule.hits)).toEqual([1, 1]);
    expect(provider.stats().totals.charges).toBe(3);
  });

  it('DELETE /_faults clears the plan', async () => {
    const provider = await startProvider();
    await setProviderFaultPlan(provider.url, { rules: [{ fault: { mode: 'fail-5xx' } }] });
    expect((await postCharge(provider.url, { key: 'a' })).status).toBe(500);
    await clearProviderFaultPlan(provider.url);
    expect(provider.faultPlan().rules).toEqual([]);
    expect((await postCharge(provider.url, { key: 'a' })).status).toBe(200);
  });

  it('refuses an invalid plan (400) and keeps the plan in force', async () => {
    const provider = await startProvider();
    await setProviderFaultPlan(provider.url, {
      rules: [{ fault: { mode: 'fail-5xx' }, times: 1 }],
    });
    for (const plan of [
      { rules: [{ fault: { mode: 'explode' } }] },
      { rules: [{ fault: { mode: 'slow' } }] },
      { rules: [{ fault: { mode: 'timeout' }, probability: 2 }] },
      { rules: [], extra: true },
    ]) {
      await expect(
        setProviderFaultPlan(provider.url, plan as FaultPlanInput),
        JSON.stringify(plan),
      ).rejects.toThrow(/answered 400/);
    }
    expect((await postCharge(provider.url, { key: 'a' })).status).toBe(500);
  });
});
