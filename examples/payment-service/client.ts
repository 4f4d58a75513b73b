import { setTimeout as sleep } from 'node:timers/promises';
import type { Payment } from './schema.ts';

/** One payment a client wants made; every retry of it sends exactly this. */
export interface LogicalRequest {
  merchantId: string;
  key: string;
  body: { amount_cents: number; currency: string };
}

/** What all clients saw, added up. */
export interface Tally {
  sent: number;
  abortedByClient: number;
  executed: number;
  replayed: number;
  conflicts: number;
  networkErrors: number;
  serverErrors: number;
  /** Logical requests that ran out of attempts or time. */
  gaveUp: number;
  /** Answers no correct run gives: a 400, a 422... */
  unexpected: string[];
  /** Every 201 body received, by {@link pairId}. */
  received: Map<string, Payment[]>;
}

export function emptyTally(): Tally {
  return {
    sent: 0,
    abortedByClient: 0,
    executed: 0,
    replayed: 0,
    conflicts: 0,
    networkErrors: 0,
    serverErrors: 0,
    gaveUp: 0,
    unexpected: [],
    received: new Map(),
  };
}

export function pairId(merchantId: string, key: string): string {
  return `${merchantId} ${key}`;
}

export interface ClientOptions {
  /** Where the service listens now; the demo may move it. */
  target: { url: string };
  /** Chance that an attempt's client is "killed" mid-request, and replaced by a new one. */
  abortProbability: number;
  maxAttempts: number;
  deadline: number;
  /** Stops the storm early: the demo has failed anyway. */
  signal: AbortSignal;
}

/**
 * Sends `request` until it gets a 201, the way a well-behaved client retries: same key, same body;
 * after a 409 it waits Retry-After, after a network error or a 5xx it backs off.
 */
export async function sendUntilCreated(
  request: LogicalRequest,
  tally: Tally,
  options: ClientOptions,
): Promise<void> {
  for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
    if (Date.now() > options.deadline || options.signal.aborted) break;
    const controller = new AbortController();
    const killed = Math.random() < options.abortProbability;
    // Anywhere from before the server commits to after it did, when only the answer is lost.
    const timer = killed
      ? setTimeout(() => controller.abort(), 2 + Math.random() * 120)
      : undefined;
    tally.sent++;
    try {
      const res = await fetch(`${options.target.url}/payments`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'merchant-id': request.merchantId,
          'idempotency-key': request.key,
        },
        body: JSON.stringify(request.body),
        signal: controller.signal,
      });
      const text = await res.text();
      clearTimeout(timer);
      if (res.status === 201) {
        record(tally, request, JSON.parse(text) as Payment, res.headers.has('idempotent-replayed'));
        return;
      }
      if (res.status === 409) {
        tally.conflicts++;
        await sleep(retryAfterMs(res) + Math.random() * 100);
      } else if (res.status >= 500) {
        tally.serverErrors++;
        await sleep(backoffMs(attempt));
      } else {
        tally.unexpected.push(`${res.status} for ${request.merchantId}/${request.key}: ${text}`);
        return;
      }
    } catch {
      clearTimeout(timer);
      // A killed client's replacement retries at once; a failed connection waits out the outage.
      if (controller.signal.aborted) {
        tally.abortedByClient++;
      } else {
        tally.networkErrors++;
        await sleep(backoffMs(attempt));
      }
    }
  }
  tally.gaveUp++;
}

function record(tally: Tally, request: LogicalRequest, payment: Payment, replayed: boolean): void {
  if (replayed) tally.replayed++;
  else tally.executed++;
  const id = pairId(request.merchantId, request.key);
  const bodies = tally.received.get(id) ?? [];
  bodies.push(payment);
  tally.received.set(id, bodies);
}

function retryAfterMs(res: Response): number {
  const seconds = Number(res.headers.get('retry-after'));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 10) * 1000 : 1000;
}

/** Exponential with full jitter, capped: clients must not hammer a service that is restarting. */
function backoffMs(attempt: number): number {
  return Math.random() * Math.min(1000, 50 * 2 ** attempt);
}
