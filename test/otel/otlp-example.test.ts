/**
 * examples/otel, run as a user would (its own process, the SDK's OTLP/HTTP exporters), against an
 * OTLP receiver that keeps what it is sent: the spans and metrics arrive, nested and labelled as
 * the README says, with no idempotency key in them.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { useTestDatabase } from '../support/database.ts';

const run = promisify(execFile);
const database = useTestDatabase();

/** What the receiver was sent, by path, as parsed JSON (the exporters send OTLP/JSON). */
const received: { path: string; body: string }[] = [];
let receiver: Server;
let endpoint: string;

beforeAll(async () => {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ path: request.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => receiver.close(resolve));
});

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string; boolValue?: boolean; intValue?: string | number };
}
interface OtlpSpan {
  name: string;
  spanId: string;
  parentSpanId?: string;
  attributes: OtlpAttribute[];
}

function attribute(attributes: OtlpAttribute[], key: string) {
  const value = attributes.find((each) => each.key === key)?.value;
  return value?.stringValue ?? value?.boolValue ?? value?.intValue;
}

it('exports nested spans and labelled metrics over OTLP, without the keys', async () => {
  const { stdout } = await run(process.execPath, ['examples/otel/main.ts'], {
    env: { ...process.env, DATABASE_URL: database.url, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint },
    timeout: 60_000,
  });
  expect(stdout).toMatch(/first request: +201\n/);
  expect(stdout).toMatch(/client retry: +201 \(replayed\)\n/);
  expect(stdout).toMatch(/reused, changed: +refused: 422\n/);
  const { rows } = await database.pool.query<{ count: string }>(
    'select count(*) from example_payments',
  );
  expect(rows[0]?.count).toBe('1');

  const spans = received
    .filter(({ path }) => path === '/v1/traces')
    .flatMap(
      ({ body }) =>
        (JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] })
          .resourceSpans,
    )
    .flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans));
  const requests = spans.filter((span) => span.name === 'POST /payments');
  const calls = spans.filter((span) => span.name === 'withIdempotency');
  expect(requests).toHaveLength(3);
  expect(calls.map((span) => attribute(span.attributes, 'idempotency.outcome'))).toEqual([
    'executed',
    'replayed',
    'key_reused',
  ]);
  for (const call of calls) {
    expect(requests.map((span) => span.spanId)).toContain(call.parentSpanId);
  }

  const metrics = received.filter(({ path }) => path === '/v1/metrics').map(({ body }) => body);
  expect(metrics.join('\n')).toContain('"idempotency.call.duration"');
  expect(metrics.join('\n')).toContain('"stringValue":"create-payment"');
  expect(metrics.join('\n')).not.toContain('merchant-42');

  // The key is a random UUID: none may appear in anything sent.
  const key = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
  for (const { body } of received) expect(body).not.toMatch(key);
});
