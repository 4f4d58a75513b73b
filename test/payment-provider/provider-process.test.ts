/**
 * The provider as a process of its own (main.ts): steered over HTTP from this one, killed with
 * SIGKILL and started again on its state file, stopped with SIGTERM.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fetchProviderStats,
  setProviderFaultPlan,
} from '../../examples/payment-provider/admin-client.ts';
import {
  type ProviderProcess,
  startProviderProcess,
} from '../../examples/payment-provider/provider-process.ts';
import { postCharge } from './support.ts';

let directory: string;
let stateFile: string;
const started: ProviderProcess[] = [];

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'payment-provider-'));
  stateFile = join(directory, 'state.json');
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((provider) => provider.kill()));
  rmSync(directory, { recursive: true, force: true });
});

async function start(options: Parameters<typeof startProviderProcess>[0] = {}) {
  const provider = await startProviderProcess(options);
  started.push(provider);
  return provider;
}

describe('examples/payment-provider/main.ts', () => {
  it('keeps its charges and counters across a SIGKILL', async () => {
    const first = await start({ stateFile });
    const charged = await postCharge(first.url, { key: 'order-1' });
    const declined = await postCharge(first.url, {
      key: 'order-2',
      body: { amount_cents: 4_000_002, currency: 'EUR', customer: 'cus_1' },
    });
    await first.kill();

    const second = await start({ stateFile });
    const replayed = await postCharge(second.url, { key: 'order-1' });
    const declinedAgain = await postCharge(second.url, {
      key: 'order-2',
      body: { amount_cents: 4_000_002, currency: 'EUR', customer: 'cus_1' },
    });
    expect(replayed.status).toBe(200);
    expect(replayed.bytes.equals(charged.bytes)).toBe(true);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect(declinedAgain.status).toBe(402);
    expect(declinedAgain.bytes.equals(declined.bytes)).toBe(true);
    const stats = await fetchProviderStats(second.url);
    expect(stats.keys['order-1']).toMatchObject({ requests: 2, charges: 1, replays: 1 });
    expect(stats.totals).toMatchObject({ requests: 4, charges: 2, succeeded: 1, declined: 1 });
    // The state is replaced by renaming a temporary file: none is left behind.
    expect(readdirSync(directory)).toEqual(['state.json']);
  });

  it('replays, after a SIGKILL, a charge whose answer was dropped (a plan set over HTTP)', async () => {
    const first = await start({ stateFile });
    await setProviderFaultPlan(first.url, {
      rules: [{ fault: { mode: 'charge-then-drop' }, keys: ['order-1'], timesPerKey: 1 }],
    });
    await expect(postCharge(first.url, { key: 'order-1' })).rejects.toThrow(TypeError);
    await first.kill();

    const second = await start({ stateFile, port: first.port });
    expect(second.url).toBe(first.url);
    const retry = await postCharge(second.url, { key: 'order-1' });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect((await fetchProviderStats(second.url)).keys['order-1']).toMatchObject({
      requests: 2,
      charges: 1,
      faults: { 'charge-then-drop': 1 },
    });
  });

  it('forgets everything across a restart without a state file', async () => {
    const first = await start();
    await postCharge(first.url, { key: 'order-1' });
    await first.kill();
    const second = await start();
    const again = await postCharge(second.url, { key: 'order-1' });
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect((await fetchProviderStats(second.url)).totals.charges).toBe(1);
  });

  it('takes a fault plan from FAULT_PLAN', async () => {
    const provider = await start({
      faultPlan: { rules: [{ fault: { mode: 'fail-5xx', status: 503 }, times: 1 }] },
    });
    expect((await postCharge(provider.url, { key: 'a' })).status).toBe(503);
    expect((await postCharge(provider.url, { key: 'a' })).status).toBe(200);
  });

  it('exits 0 on SIGTERM', async () => {
    const provider = await start({ stateFile });
    await postCharge(provider.url, { key: 'order-1' });
    expect(await provider.stop()).toBe(0);
  });

  it('refuses to start on a state file it cannot read, rather than forget charges', async () => {
    writeFileSync(stateFile, '{"version":1,"responses":');
    await expect(start({ stateFile })).rejects.toThrow(
      /exited at startup \(code 2\)[\s\S]*is not JSON/,
    );
  });
});
