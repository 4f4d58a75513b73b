/**
 * The example servers' SIGTERM contract: stop accepting connections, let the request in flight
 * finish (its client gets its 201), then exit 0. The request is held inside the server's
 * transaction by a table lock the test takes, so that SIGTERM arrives while it is in flight.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { waitForLockWaiters } from '../support/barrier.ts';
import { startConformanceTarget } from './support/conformance-target.ts';

const examples = new URL('../../examples/http/', import.meta.url);

describe.each(['express', 'fastify', 'hono', 'node-http'])('examples/http/%s', (framework) => {
  it('finishes the request in flight on SIGTERM, then exits 0', async () => {
    const target = await startConformanceTarget(
      new URL(`${framework}/server.ts`, examples).pathname,
    );
    const { server, db } = target;
    const connection = await db.connection().execute(async (locked) => {
      await sql`begin`.execute(locked);
      // Conflicts with the INSERT's row-exclusive lock: the payment waits inside its transaction.
      await sql`lock table payments in share row exclusive mode`.execute(locked);
      const inFlight = fetch(`${server.baseUrl}/payments`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'merchant-id': 'shutdown',
          'idempotency-key': `shutdown-${framework}`,
        },
        body: JSON.stringify({ amount_cents: 100, currency: 'EUR' }),
      });
      await waitForLockWaiters(db, 1);
      const exited = server.stop();
      // SIGTERM has been handled once the server refuses new connections.
      await expect
        .poll(
          () =>
            fetch(`${server.baseUrl}/payments/unknown`).then(
              () => 'accepting',
              () => 'refused',
            ),
          { timeout: 15_000, message: 'the server stops accepting connections after SIGTERM' },
        )
        .toBe('refused');
      expect(server.running).toBe(true);
      await sql`commit`.execute(locked);
      return { inFlight, exited };
    });
    const response = await connection.inFlight;
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ merchant_id: 'shutdown', amount_cents: 100 });
    expect(await connection.exited, server.output()).toBe(0);
    const { rows } = await sql<{ count: number }>`
      select count(*)::int as count from payments where merchant_id = 'shutdown'`.execute(db);
    expect(rows[0]?.count).toBe(1);
  }, 60_000);
});
