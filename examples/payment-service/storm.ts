import { randomUUID } from 'node:crypto';
import { type LogicalRequest, sendUntilCreated, type Tally } from './client.ts';

export interface StormPlan {
  /** Logical requests: payments clients want, several per key, as retried clients do. */
  requests: number;
  merchants: number;
  keysPerMerchant: number;
  concurrency: number;
  abortProbability: number;
  maxAttemptsPerRequest: number;
  deadlineMs: number;
}

/**
 * The logical requests, in sending order. Keys come in gradually and overlap, so that new
 * payments are being created at any moment of the storm, crashes included.
 */
export function planRequests(plan: StormPlan): LogicalRequest[] {
  const keys: LogicalRequest[] = [];
  for (let n = 0; n < plan.keysPerMerchant; n++) {
    // The same key texts for every merchant: the scope alone keeps their payments apart.
    const key = `order-${n + 1}-${randomUUID().slice(0, 8)}`;
    for (let m = 0; m < plan.merchants; m++) {
      const index = keys.length;
      keys.push({
        merchantId: `merchant-${m + 1}`,
        key,
        body: { amount_cents: 500 + 25 * index, currency: ['EUR', 'USD', 'GBP'][m % 3] ?? 'EUR' },
      });
    }
  }
  const spread = 8;
  return Array.from({ length: plan.requests }, (_, i) => ({
    order: (i % keys.length) + Math.random() * spread,
    request: keys[i % keys.length] as LogicalRequest,
  }))
    .sort((a, b) => a.order - b.order)
    .map(({ request }) => request);
}

/** Sends every logical request, `concurrency` at a time; reports progress as each one ends. */
export async function runStorm(
  requests: LogicalRequest[],
  plan: StormPlan,
  target: { url: string },
  tally: Tally,
  signal: AbortSignal,
  onProgress: (done: number) => void,
): Promise<void> {
  const options = {
    target,
    signal,
    abortProbability: plan.abortProbability,
    maxAttempts: plan.maxAttemptsPerRequest,
    deadline: Date.now() + plan.deadlineMs,
  };
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < requests.length) {
      const request = requests[next++] as LogicalRequest;
      await sendUntilCreated(request, tally, options);
      onProgress(++done);
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
}
