import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../support/database.ts';

// An empty database: the example migrates the ledger and creates its own `payments` table.
const database = useTestDatabase();
const SERVER = fileURLToPath(new URL('../../examples/http/hono/server.ts', import.meta.url));

let child: ChildProcess | undefined;
afterEach(() => {
  // A test that failed before SIGTERM must not leave the server running.
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = undefined;
});

/** Starts the example on a free port and resolves with its URL once it prints its line. */
async function startExample() {
  const started = spawn(process.execPath, [SERVER], {
    env: { ...process.env, DATABASE_URL: database.url, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = started;
  let stderr = '';
  started.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(started, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = createInterface({ input: started.stdout as NonNullable<ChildProcess['stdout']> });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => line as string),
    exited.then(([code]) => `exited with ${code}: ${stderr}`),
  ]);
  const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line: ${first}`);
  return {
    url: match[1] as string,
    exited,
    stderr: () => stderr,
    stop: () => started.kill('SIGTERM'),
  };
}

function createPayment(url: string, headers: Record<string, string>, body: string) {
  return fetch(`${url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

describe('examples/http/hono/server.ts', () => {
  it('creates a payment once, replays it, serves it, and exits 0 on SIGTERM', async () => {
    const server = await startExample();
    const headers = { 'merchant-id': 'merchant_42', 'idempotency-key': 'order-7-attempt' };
    const body = JSON.stringify({ amount_cents: 1250, currency: 'EUR' });

    const unauthenticated = await createPayment(server.url, { 'idempotency-key': 'k' }, body);
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers.get('content-type')).toBe('application/problem+json');

    // A body that fails validation is refused before the key is taken.
    const invalid = await createPayment(server.url, headers, '{"amount_cents": -1}');
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toMatchObject({ status: 400 });

    const first = await createPayment(server.url, headers, body);
    const firstBody = await first.text();
    expect(first.status, firstBody).toBe(201);
    const payment = JSON.parse(firstBody) as { id: string; amount_cents: number };
    expect(payment).toMatchObject({ merchant_id: 'merchant_42', amount_cents: 1250 });
    expect(first.headers.get('location')).toBe(`/payments/${payment.id}`);

    const replay = await createPayment(server.url, headers, body);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe(first.headers.get('location'));
    expect(await replay.text()).toBe(firstBody);

    const reused = await createPayment(server.url, headers, body.replace('1250', '1251'));
    expect(reused.status).toBe(422);
    const missingKey = await createPayment(server.url, { 'merchant-id': 'merchant_42' }, body);
    expect(missingKey.status).toBe(400);

    const fetched = await fetch(`${server.url}/payments/${payment.id}`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toEqual(payment);
    const unknown = await fetch(`${server.url}/payments/00000000-0000-0000-0000-000000000000`);
    expect(unknown.status).toBe(404);

    const { rows } = await database.pool.query(
      'select count(*)::int as n from payments where idempotency_key = $1',
      ['order-7-attempt'],
    );
    expect(rows[0].n).toBe(1);

    server.stop();
    const [code, signal] = await server.exited;
    expect({ code, signal }, server.stderr()).toEqual({ code: 0, signal: null });
  });
});
