/**
 * The service: `POST /payments` on node:http, and the completer beside it, started and stopped
 * together.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Kysely } from 'kysely';
import { type Completer, startCompleter } from './completer.ts';
import { createPaymentOperation } from './create-payment.ts';
import type { Database } from './orders.ts';
import { paymentsListener } from './payments-endpoint.ts';

export interface PaymentServiceOptions {
  /** A database prepareDatabase() (orders.ts) has prepared. The caller closes it. */
  db: Kysely<Database>;
  /** The payment provider, `http://127.0.0.1:4010`. */
  providerUrl: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** How long a charge may take before it counts as "may have been made". Default 5 s. */
  chargeTimeoutMs?: number;
  /** How long a duplicate waits for the attempt in flight before a 409. Default 10 s. */
  waitTimeoutMs?: number;
  /** Pause between the completer's passes; `false` runs no completer. Default 5 s. */
  completerIntervalMs?: number | false;
  log?: (message: string) => void;
}

/** A running service. */
export interface PaymentService {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  server: Server;
  /**
   * Stops accepting connections, lets the requests in flight finish (their operations finish or
   * stay resumable), and stops the completer after its pass in flight.
   */
  close(): Promise<void>;
}

/**
 * Starts the service on 127.0.0.1 and resolves once it listens.
 *
 * @example
 * ```ts
 * const service = await startPaymentService({ db, providerUrl: 'http://127.0.0.1:4010' });
 * // curl -X POST $service.url/payments -H 'Idempotency-Key: order-17' -d '{...}'
 * await service.close();
 * ```
 */
export async function startPaymentService(options: PaymentServiceOptions): Promise<PaymentService> {
  const { db } = options;
  const log = options.log ?? (() => undefined);
  const createPayment = createPaymentOperation({
    providerUrl: options.providerUrl,
    chargeTimeoutMs: options.chargeTimeoutMs ?? 5_000,
  });

  const server = createServer(
    paymentsListener({ db, createPayment, waitTimeoutMs: options.waitTimeoutMs ?? 10_000, log }),
  );
  let stopping = false;
  // A keep-alive connection whose last request ends after close() began would stay open until
  // keepAliveTimeout: close it as soon as it is idle.
  server.on('request', (_req, res) => {
    res.once('finish', () => {
      if (stopping) setImmediate(() => server.closeIdleConnections());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const interval = options.completerIntervalMs ?? 5_000;
  const completer: Completer | undefined =
    interval === false
      ? undefined
      : startCompleter(db, {
          operations: [createPayment],
          intervalMs: interval,
          onPass: (result) => log(`completer: ${JSON.stringify(result)}`),
          onError: (error) =>
            log(`completer: ${error instanceof Error ? error.message : String(error)}`),
        });

  return {
    url: `http://127.0.0.1:${port}`,
    server,
    async close() {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.all([closed, completer?.stop()]);
    },
  };
}
