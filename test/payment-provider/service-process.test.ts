/**
 * examples/payment-provider/service/main.ts as a process, as its README runs it: it prepares an
 * empty database, charges through the provider, and on SIGTERM finishes the request in flight
 * (held inside its transaction by a table lock the test takes), then exits 0.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type PaymentProvider,
  startPaymentProvider,
} from '../../examples/payment-provider/server.ts';
import { waitForLockWaiters } from '../support/barrier.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { uniqueKey } from '../support/ledger-fixture.ts';
import { chargeKey, postPayment, uniqueCustomer } from './service-support.ts';

const serviceMain = fileURLToPath(
  new URL('../../examples/payment-provider/service/main.ts', import.meta.url),
);

let database: TestDatabase;
let provider: PaymentProvider;
beforeAll(async () => {
  // Empty, without the ledger: main.ts migrates it.
  database = await createTestDatabase();
  provider = await startPaymentProvider();
});
afterAll(async () => {
  await provider?.close();
  await database?.drop();
});

it('prepares an empty database, charges once per key, and on SIGTERM finishes the request in flight, then exits 0', async () => {
  const child = fork(serviceMain, [], {
    env: { ...process.env, DATABASE_URL: database.url, PROVIDER_URL: provider.url, PORT: '0' },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  try {
    const url = await listeningUrl(child, exited);
    const customer = uniqueCustomer();
    const first = uniqueKey();
    const paid = await postPayment(url, first, { amount_cents: 700, currency: 'EUR', customer });
    expect(paid.status, stderr).toBe(201);

    const second = uniqueKey();
    const inFlight = await database.db.connection().execute(async (locked) => {
      await sql`begin`.execute(locked);
      // Conflicts with the order's INSERT: the payment waits inside its first step.
      await sql`lock table orders in share row exclusive mode`.execute(locked);
      const inFlight = postPayment(url, second, { amount_cents: 800, currency: 'EUR', customer });
      await waitForLockWaiters(database.db, 1);
      child.kill('SIGTERM');
      // SIGTERM has been handled once the service refuses new connections.
      await expect
        .poll(
          () =>
            fetch(`${url}/payments`).then(
              () => 'accepting',
              () => 'refused',
            ),
          { timeout: 15_000, message: 'the service stops accepting connections after SIGTERM' },
        )
        .toBe('refused');
      await sql`commit`.execute(locked);
      return inFlight;
    });
    expect((await inFlight).status, stderr).toBe(201);
    expect(await exited, stderr).toBe(0);

    const { rows } = await sql<{ state: string; amount_cents: number }>`
      select state, amount_cents from orders where customer = ${customer} order by id`.execute(
      database.db,
    );
    expect(rows).toEqual([
      { state: 'paid', amount_cents: 700 },
      { state: 'paid', amount_cents: 800 },
    ]);
    for (const key of [first, second]) {
      expect(provider.stats().keys[chargeKey(key)]?.charges).toBe(1);
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}, 60_000);

/** The URL main.ts prints once it listens; fails if it exits first. */
function listeningUrl(child: ChildProcess, exited: Promise<number | null>): Promise<string> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  return new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /^listening on (http:\/\/\S+)$/.exec(line);
      if (match?.[1]) resolve(match[1]);
    });
    // Once resolved, a later rejection is a no-op: this only reports a service that never listened.
    void exited.then((code) => reject(new Error(`the service exited (${code}) before listening`)));
  });
}
