/**
 * chargeCard() says what a caller may conclude from each outcome: charged, declined, not charged
 * (retryable), may have been charged (unknown), or a request that cannot succeed (rejected).
 */
import { describe, expect, it } from 'vitest';
import {
  type ChargeCardOptions,
  chargeCard,
  PaymentProviderError,
} from '../../examples/payment-provider/charge-card.ts';
import { CHARGE, useProviders } from './support.ts';

const startProvider = useProviders();
const KEY = 'secret-key-8e03978e';

function options(overrides: Partial<ChargeCardOptions> = {}): ChargeCardOptions {
  return { key: KEY, ...CHARGE, timeoutMs: 10_000, ...overrides };
}

/** The error chargeCard() threw, checked for what every error must be. */
async function failure(call: Promise<unknown>): Promise<PaymentProviderError> {
  const error = await call.then(
    (outcome) => {
      throw new Error(`expected a failure, got ${JSON.stringify(outcome)}`);
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(PaymentProviderError);
  const providerError = error as PaymentProviderError;
  expect(providerError.name).toBe('PaymentProviderError');
  // The key is the caller's secret.
  expect(providerError.message).not.toContain(KEY);
  return providerError;
}

describe('chargeCard()', () => {
  it('returns a succeeded charge, and the same charge replayed on a retry', async () => {
    const provider = await startProvider();
    const first = await chargeCard(provider.url, options());
    const retry = await chargeCard(provider.url, options());
    expect(first).toEqual({
      kind: 'succeeded',
      charge: {
        id: expect.stringMatching(/^ch_/),
        ...CHARGE,
        status: 'succeeded',
        created: expect.any(Number),
      },
      replayed: false,
    });
    expect(retry).toEqual({ ...first, replayed: true });
    expect(provider.stats().keys[KEY]?.charges).toBe(1);
  });

  it('returns a declined charge, first and replayed', async () => {
    const provider = await startProvider();
    const declined = options({ amount_cents: 4_000_002 });
    const first = await chargeCard(provider.url, declined);
    expect(first).toMatchObject({
      kind: 'declined',
      charge: { status: 'declined' },
      replayed: false,
    });
    expect(await chargeCard(provider.url, declined)).toEqual({ ...first, replayed: true });
  });

  it.each([
    [{ mode: 'fail-5xx' } as const, 500],
    [{ mode: 'fail-5xx', status: 503 } as const, 503],
    [{ mode: 'fail-after-charge-5xx' } as const, 500],
  ])('classifies %o as unknown (%i): a 5xx may come after the charge', async (fault, status) => {
    const provider = await startProvider();
    const error = await failure(chargeCard(provider.url, options({ fault })));
    expect(error).toMatchObject({ kind: 'unknown', status });
  });

  it('classifies charge-then-drop as unknown, and the retry returns the charge it made', async () => {
    const provider = await startProvider();
    const error = await failure(
      chargeCard(provider.url, options({ fault: { mode: 'charge-then-drop' } })),
    );
    expect(error).toMatchObject({ kind: 'unknown', status: undefined, code: 'ECONNRESET' });
    const retry = await chargeCard(provider.url, options());
    expect(retry).toMatchObject({ kind: 'succeeded', replayed: true });
    expect(retry.charge).toEqual(provider.charges()[0]);
  });

  it('classifies timeout as unknown once timeoutMs has passed', async () => {
    const provider = await startProvider();
    const error = await failure(
      chargeCard(provider.url, options({ fault: { mode: 'timeout' }, timeoutMs: 200 })),
    );
    expect(error).toMatchObject({ kind: 'unknown', code: 'timeout' });
  });

  it('classifies a slow answer as unknown when it comes after timeoutMs, and the charge is made anyway', async () => {
    const provider = await startProvider();
    const error = await failure(
      chargeCard(provider.url, options({ fault: { mode: 'slow', delayMs: 400 }, timeoutMs: 100 })),
    );
    expect(error).toMatchObject({ kind: 'unknown', code: 'timeout' });
    await expect
      .poll(() => provider.stats().keys[KEY]?.charges, {
        timeout: 10_000,
        message: 'the provider charges after its delay, though the client left',
      })
      .toBe(1);
    expect(await chargeCard(provider.url, options())).toMatchObject({
      kind: 'succeeded',
      replayed: true,
    });
  });

  it('returns a slow answer that comes within timeoutMs', async () => {
    const provider = await startProvider();
    expect(
      await chargeCard(provider.url, options({ fault: { mode: 'slow', delayMs: 50 } })),
    ).toMatchObject({ kind: 'succeeded', replayed: false });
  });

  it('classifies a refused connection as retryable: nothing was sent', async () => {
    const provider = await startProvider();
    await provider.close();
    const error = await failure(chargeCard(provider.url, options()));
    expect(error).toMatchObject({ kind: 'retryable', code: 'ECONNREFUSED' });
  });

  it('classifies 409 (the key is in use) as retryable', async () => {
    const provider = await startProvider();
    const first = chargeCard(provider.url, options({ fault: { mode: 'slow', delayMs: 60_000 } }));
    const firstError = failure(first);
    await expect.poll(() => provider.stats().keys[KEY]?.faults.slow, { timeout: 10_000 }).toBe(1);
    const error = await failure(chargeCard(provider.url, options()));
    expect(error).toMatchObject({ kind: 'retryable', status: 409, code: 'idempotency_key_in_use' });
    await provider.close();
    expect(await firstError).toMatchObject({ kind: 'unknown' });
  });

  it('classifies 422 (the key was used with another body) as rejected', async () => {
    const provider = await startProvider();
    await chargeCard(provider.url, options());
    const error = await failure(chargeCard(provider.url, options({ amount_cents: 1 })));
    expect(error).toMatchObject({ kind: 'rejected', status: 422, code: 'idempotency_key_reused' });
  });

  it('classifies an invalid request (400) as rejected', async () => {
    const provider = await startProvider();
    const error = await failure(chargeCard(provider.url, options({ currency: 'euro' })));
    expect(error).toMatchObject({ kind: 'rejected', status: 400, code: 'parameter_invalid' });
  });

  it('fails as retryable when aborted before the call, and nothing reaches the provider', async () => {
    const provider = await startProvider();
    const error = await failure(
      chargeCard(provider.url, options({ signal: AbortSignal.abort(new Error('shutting down')) })),
    );
    expect(error).toMatchObject({ kind: 'retryable', code: 'aborted' });
    expect(error.cause).toEqual(new Error('shutting down'));
    expect(provider.stats().totals.requests).toBe(0);
  });

  it('fails as unknown when aborted while the provider holds the request', async () => {
    const provider = await startProvider();
    const controller = new AbortController();
    const call = failure(
      chargeCard(
        provider.url,
        options({ fault: { mode: 'slow', delayMs: 60_000 }, signal: controller.signal }),
      ),
    );
    await expect.poll(() => provider.stats().keys[KEY]?.faults.slow, { timeout: 10_000 }).toBe(1);
    controller.abort();
    expect(await call).toMatchObject({ kind: 'unknown', code: 'aborted' });
  });
});
