/**
 * examples/http/fastify/server.ts as its users run it: `node server.ts` in a child process, on a
 * database of its own, until SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../support/database.ts';

const SERVER = fileURLToPath(new URL('../../examples/http/fastify/server.ts', import.meta.url));
const database = useTestDatabase();

let child: ChildProcess;
let baseUrl: string;
let stderr = '';

beforeAll(async () => {
  child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, DATABASE_URL: database.url, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`the server exited (${code}) before listening: ${stderr}`);
  });
  const listening = (async () => {
    for await (const line of lines) {
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (match) return match[1] as string;
    }
    throw new Error(`the server closed its output before listening: ${stderr}`);
  })();
  baseUrl = await Promise.race([listening, exited]);
});
afterAll(() => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

const createPayment = (headers: Record<string, string>, body: string) =>
  fetch(`${baseUrl}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });

describe('the Fastify example payment service', () => {
  it('creates a payment once, replays it, and serves it with GET', async () => {
    const headers = { 'merchant-id': 'shop_1', 'idempotency-key': 'order-1001' };
    const body = JSON.stringify({ amount_cents: 1250, currency: 'EUR' });
    const first = await createPayment(headers, body);
    const firstBody = Buffer.from(await first.arrayBuffer());
    expect(first.status).toBe(201);
    const payment = JSON.parse(firstBody.toString()) as { id: string };
    expect(first.headers.get('location')).toBe(`/payments/${payment.id}`);

    const replay = await createPayment(headers, body);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe(first.headers.get('location'));
    expect(Buffer.from(await replay.arrayBuffer()).equals(firstBody)).toBe(true);

    const fetched = await fetch(`${baseUrl}/payments/${payment.id}`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toEqual(JSON.parse(firstBody.toString()));
    const unknown = await fetch(`${baseUrl}/payments/not-a-payment`);
    expect(unknown.status).toBe(404);

    const { rows } = await database.pool.query(
      "select count(*)::int as count from payments where idempotency_key = 'order-1001'",
    );
    expect(rows[0].count).toBe(1);
  });

  it('refuses a missing merchant, a missing key and a bad body before using the key', async () => {
    const valid = JSON.stringify({ amount_cents: 300, currency: 'EUR' });
    const anonymous = await createPayment({ 'idempotency-key': 'order-2001' }, valid);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    const keyless = await createPayment({ 'merchant-id': 'shop_1' }, valid);
    expect(keyless.status).toBe(400);
    expect(await keyless.json()).toMatchObject({
      type: 'urn:idempotency-ledger:problem:missing-key',
    });

    const headers = { 'merchant-id': 'shop_1', 'idempotency-key': 'order-2002' };
    const invalid = await createPayment(headers, JSON.stringify({ amount_cents: -1 }));
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const malformed = await createPayment(headers, '{"amount_cents":');
    expect(malformed.status).toBe(400);
    // The key was not used up by the refused bodies.
    expect((await createPayment(headers, valid)).status).toBe(201);
    const reused = await createPayment(
      headers,
      JSON.stringify({ amount_cents: 301, currency: 'EUR' }),
    );
    expect(reused.status).toBe(422);
  });

  it('exits 0 on SIGTERM', async () => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
  });
});
