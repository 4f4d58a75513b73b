/**
 * What the payment service's tests share: a fresh database prepared as the service prepares it,
 * a provider in this process, services closed after each test, a client that keeps the answer's
 * bytes, and the counts a user relies on (orders rows, provider charges per downstream key).
 */
import { request } from 'node:http';
import { type Kysely, sql } from 'kysely';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import {
  type PaymentProvider,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';
import { type Database, prepareDatabase } from '../../examples/payment-provider/service/orders.ts';
import {
  type PaymentService,
  type PaymentServiceOptions,
  startPaymentService,
} from '../../examples/payment-provider/service/payment-service.ts';
import { PAYMENT_SCOPE } from '../../examples/payment-provider/service/payments-endpoint.ts';
import { downstreamKey } from '../../src/operations/index.ts';
import {
  createTestDatabase,
  destroyCheckedOutClients,
  expectNoCheckedOutClients,
  type TestDatabase,
} from '../support/database.ts';

export interface ServiceFixture {
  database: TestDatabase;
  db: Kysely<Database>;
  provider: PaymentProvider;
  /** Starts the service on the fixture's database and provider; closed after the test. */
  startService(options?: Partial<PaymentServiceOptions>): Promise<PaymentService>;
  /** The orders of `customer`, oldest first. */
  orders(customer: string): Promise<{ id: string; state: string; charge_id: string | null }[]>;
  /** The provider's counters for the charge of the payment with this Idempotency-Key. */
  chargeStats(key: string): { requests: number; charges: number; replays: number };
}

/**
 * The fixture of a test file: filled in by `beforeAll`. The service is not started: each test
 * starts the one it needs (with or without a completer).
 */
export function useServiceFixture(): ServiceFixture {
  const fx = {} as ServiceFixture;
  const started: PaymentService[] = [];
  beforeAll(async () => {
    fx.database = await createTestDatabase({ template: inject('ledgerTemplateDatabase') });
    fx.db = fx.database.db as Kysely<Database>;
    // What main.ts does at startup: the ledger is migrated already (a no-op), the table is new.
    await prepareDatabase(fx.db, fx.database.url);
    fx.provider = await startPaymentProvider();
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((service) => service.close()));
    try {
      expectNoCheckedOutClients(fx.database.pool, "the test database's pool");
    } finally {
      destroyCheckedOutClients(fx.database.pool);
    }
  });
  afterAll(async () => {
    await fx.provider?.close();
    await fx.database?.drop();
  });
  fx.startService = async (options = {}) => {
    const service = await startPaymentService({
      db: fx.db,
      providerUrl: fx.provider.url,
      completerIntervalMs: false,
      ...options,
    });
    started.push(service);
    return service;
  };
  fx.orders = async (customer) => {
    const { rows } = await sql<{ id: string; state: string; charge_id: string | null }>`
      select id, state, charge_id from orders where customer = ${customer} order by id`.execute(
      fx.db,
    );
    return rows;
  };
  fx.chargeStats = (key) => {
    const stats = fx.provider.stats().keys[chargeKey(key)];
    return {
      requests: stats?.requests ?? 0,
      charges: stats?.charges ?? 0,
      replays: stats?.replays ?? 0,
    };
  };
  return fx;
}

/** The downstream key the service sends the provider for the payment with this client key. */
export function chargeKey(key: string): string {
  return downstreamKey(PAYMENT_SCOPE, key, 'charge');
}

/** An answer read whole: the body's bytes, to compare replays byte for byte. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
  json: Record<string, unknown>;
}

/**
 * `POST /payments` over node:http (which, unlike fetch, can send a header twice). `key` as an
 * array sends the header once per value; undefined sends none.
 */
export function postPayment(
  baseUrl: string,
  key: string | string[] | undefined,
  body: unknown,
): Promise<Answer> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(new URL('/payments', baseUrl), {
      method: 'POST',
      agent: false,
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          bytes,
          json: JSON.parse(bytes.toString('utf8')),
        });
      });
    });
    req.end(text);
  });
}

let counter = 0;
/** A customer (and so an orders row set) no other test uses. */
export function uniqueCustomer(): string {
  counter += 1;
  return `cus_${process.pid}_${counter}_${Math.random().toString(36).slice(2, 8)}`;
}
