import { describe, expect, it } from 'vitest';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { createPayment, runnerFor } from './support/runner.ts';

const fx = useLedgerFixture();
const setup = (extra?: Parameters<typeof runnerFor>[1]) => runnerFor(fx.db, extra);

describe('runIdempotentRequest: what is stored and replayed', () => {
  it('executes, then replays the same bytes with the replay header and only stored headers', async () => {
    const { run } = setup();
    const key = uniqueKey();
    const handler = createPayment();

    const first = await run(key, handler);
    const second = await run(`"${key}"`, handler);

    expect(first.kind).toBe('executed');
    expect(first.response.headers['x-trace-id']).toBe('trace-1');
    expect(second.kind).toBe('replayed');
    expect(second.response.status).toBe(201);
    expect(
      Buffer.compare(Buffer.from(second.response.body), Buffer.from(first.response.body)),
    ).toBe(0);
    expect(second.response.headers).toEqual({
      'content-type': first.response.headers['content-type'],
      location: first.response.headers.location,
      'idempotent-replayed': 'true',
    });
    expect(handler.runs()).toBe(1);
    expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it('names the replay header as configured, or sets none', async () => {
    const key = uniqueKey();
    await setup().run(key, createPayment());
    const named = await setup({ replayedHeader: 'X-Replayed' }).run(key, createPayment());
    expect(named.response.headers['x-replayed']).toBe('true');
    const none = await setup({ replayedHeader: false }).run(key, createPayment());
    expect(none.kind).toBe('replayed');
    expect(Object.keys(none.response.headers).sort()).toEqual(['content-type', 'location']);
  });

  it.each([500, 503, 429, 408])(
    'sends a %i without storing it: writes rolled back, a retry executes',
    async (status) => {
      const { run } = setup();
      const key = uniqueKey();
      const failing = createPayment({ status });
      const outcome = await run(key, failing);
      expect(outcome.kind).toBe('not_stored');
      expect(outcome.response.status).toBe(status);
      expect(outcome.response.headers['x-trace-id']).toBe('trace-1');
      expect(await fx.countPayments(key)).toBe(0);
      expect(await fx.countEntries(key)).toBe(0);

      const retry = await run(key, createPayment());
      expect(retry.kind).toBe('executed');
      expect(await fx.countPayments(key)).toBe(1);
    },
  );

  it('asks storeIf, given status and headers, whether to store', async () => {
    const seen: unknown[] = [];
    const { run } = setup({
      storeIf: (response) => {
        seen.push(response);
        return response.headers['x-final'] === 'yes';
      },
    });
    const key = uniqueKey();
    const draft = createPayment({ status: 200, headers: { 'x-final': 'no' } });
    expect((await run(key, draft)).kind).toBe('not_stored');
    expect(seen).toEqual([{ status: 200, headers: { 'x-final': 'no' } }]);
    expect(await fx.countPayments(key)).toBe(0);
    expect((await run(key, createPayment({ headers: { 'x-final': 'yes' } }))).kind).toBe(
      'executed',
    );
  });
});
