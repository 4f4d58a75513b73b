/**
 * A fake card payment provider over node:http, Stripe-like: `POST /v1/charges` with an
 * Idempotency-Key, faults to inject, counters to read, and optionally a state file that outlives
 * the process.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleAdmin } from './admin-endpoints.ts';
import { handleCharge } from './charge-endpoint.ts';
import type { Charge } from './charge-request.ts';
import { ChargeStore } from './charge-store.ts';
import { FaultPlan, type FaultPlanInput } from './fault-plan.ts';
import { errorAnswer, send } from './http-io.ts';
import { loadState, saveState } from './state-file.ts';
import { type ProviderStats, StatsCounter } from './stats.ts';

export interface PaymentProviderOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** `127.0.0.1` by default. */
  host?: string;
  /**
   * A JSON file that holds the charges and counters: read at start, replaced (atomically, before
   * the answer is sent) on every change. Without it, the state lives and dies with the provider.
   */
  stateFile?: string;
  /** The fault plan in force from the start; none by default. */
  faultPlan?: FaultPlanInput;
}

/** A running provider. */
export interface PaymentProvider {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  port: number;
  server: Server;
  /** The counters (what `GET /_stats` answers). */
  stats(): ProviderStats;
  /** Every charge made, declined ones included. */
  charges(): Charge[];
  /** Replaces the fault plan (what `POST /_faults` does); `{ rules: [] }` for none. */
  setFaultPlan(plan: FaultPlanInput): void;
  /** The plan in force, with each rule's hits (what `GET /_faults` answers). */
  faultPlan(): ReturnType<FaultPlan['describe']>;
  /**
   * Stops at once: closes every connection, answered or not, and drops the requests waiting in
   * a `slow` delay unprocessed. Nothing is lost that was answered: each change was saved first.
   */
  close(): Promise<void>;
}

/**
 * Starts a provider in this process.
 *
 * @example
 * ```ts
 * const provider = await startPaymentProvider({ stateFile: '/tmp/provider.json' });
 * const outcome = await chargeCard(provider.url, {
 *   key: 'order-17-charge', amount_cents: 1999, currency: 'EUR', customer: 'cus_42',
 * });
 * provider.stats().keys['order-17-charge']?.charges; // 1
 * await provider.close();
 * ```
 */
export async function startPaymentProvider(
  options: PaymentProviderOptions = {},
): Promise<PaymentProvider> {
  const { stateFile } = options;
  const saved = stateFile === undefined ? undefined : loadState(stateFile);
  const store = new ChargeStore(saved?.responses);
  const stats = new StatsCounter(saved?.stats);
  let plan = new FaultPlan(options.faultPlan);
  let closing = false;
  // The `slow` delays in progress: close() ends them, so that no charge is made after it.
  const delays = new Set<() => void>();

  const chargeContext = {
    store,
    stats,
    faultFor: (key: string) => plan.faultFor(key),
    holds: new Map<string, string>(),
    save() {
      if (stateFile !== undefined) {
        saveState(stateFile, { version: 1, responses: store.toJSON(), stats: stats.snapshot() });
      }
    },
    delay: (delayMs: number) =>
      new Promise<boolean>((resolve) => {
        if (closing) return resolve(false);
        const cancel = () => {
          clearTimeout(timer);
          delays.delete(cancel);
          resolve(false);
        };
        const timer = setTimeout(() => {
          delays.delete(cancel);
          resolve(true);
        }, delayMs);
        delays.add(cancel);
      }),
  };
  const adminContext = {
    stats: () => stats.snapshot(),
    faultPlan: () => plan.describe(),
    setFaultPlan(input: FaultPlanInput) {
      plan = new FaultPlan(input);
    },
  };

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://provider').pathname;
    const answered =
      path === '/v1/charges' && req.method === 'POST'
        ? handleCharge(chargeContext, req, res).then(() => true)
        : handleAdmin(adminContext, path, req, res);
    answered.then(
      (found) => {
        if (!found)
          send(res, errorAnswer(404, { type: 'invalid_request_error', message: 'Not found' }));
      },
      (error: unknown) => {
        // The client (or close()) ended the connection mid-request: nobody to answer.
        if (res.destroyed) return;
        // A bug in the fake, or a state file it cannot write.
        process.stderr.write(`payment provider: ${String(error)}\n`);
        if (!res.headersSent)
          send(res, errorAnswer(500, { type: 'api_error', message: 'Internal error' }));
        else res.destroy();
      },
    );
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${host}:${port}`,
    port,
    server,
    stats: adminContext.stats,
    charges: () => store.charges(),
    setFaultPlan: adminContext.setFaultPlan,
    faultPlan: adminContext.faultPlan,
    close() {
      closing = true;
      for (const cancel of delays) cancel();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      return closed;
    },
  };
}
