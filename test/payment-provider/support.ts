import { afterEach } from 'vitest';
import type { ChargeRequest } from '../../examples/payment-provider/charge-request.ts';
import {
  type PaymentProvider,
  type PaymentProviderOptions,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';

export const CHARGE: ChargeRequest = { amount_cents: 1999, currency: 'EUR', customer: 'cus_42' };

/** Starts an in-process provider, closed after the test. */
export function useProviders(): (options?: PaymentProviderOptions) => Promise<PaymentProvider> {
  const started: PaymentProvider[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((provider) => provider.close()));
  });
  return async (options) => {
    const provider = await startPaymentProvider(options);
    started.push(provider);
    return provider;
  };
}

/** A response read whole: its body as bytes, to compare replays byte for byte. */
export interface ChargeResponse {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json: unknown;
}

/** `POST /v1/charges` with `fetch`. */
export async function postCharge(
  url: string,
  options: {
    key?: string;
    body?: unknown;
    fault?: string;
    signal?: AbortSignal;
  } = {},
): Promise<ChargeResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  if (options.fault !== undefined) headers['provider-fault'] = options.fault;
  const res = await fetch(`${url}/v1/charges`, {
    method: 'POST',
    headers,
    body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body ?? CHARGE),
    signal: options.signal ?? null,
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, bytes, json: JSON.parse(bytes.toString()) };
}
