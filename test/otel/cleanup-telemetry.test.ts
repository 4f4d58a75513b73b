/**
 * idempotency-ledger/otel for cleanup, against the real OpenTelemetry SDK: a span per run or
 * scheduled tick, and the entries deleted as a counter that matches the rows that left the table.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import type { DataPoint } from '@opentelemetry/sdk-metrics';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cleanupExpired, scheduleCleanup } from '../../src/index.ts';
import {
  ATTR,
  CLEANUP_SPAN_NAME,
  type IdempotencyInstrumentation,
  instrumentIdempotency,
  METRIC,
} from '../../src/otel/index.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type OtelSdk, startOtelSdk } from './otel-sdk.ts';

const fx = useLedgerFixture();
let sdk: OtelSdk;
let instrumentation: IdempotencyInstrumentation;

beforeAll(() => {
  sdk = startOtelSdk();
});
afterAll(async () => {
  await sdk.shutdown();
});
beforeEach(() => {
  sdk.reset();
  instrumentation = instrumentIdempotency({
    tracerProvider: sdk.tracerProvider,
    meterProvider: sdk.meterProvider,
  });
});
afterEach(() => {
  instrumentation.disable();
});

async function insertExpired(prefix: string, count: number) {
  await sql`
    insert into idempotency.ledger (scope, key, expires_at)
    select 'bulk', ${prefix} || '-' || g, statement_timestamp() - interval '1 hour'
      from generate_series(1, ${count}::int) g`.execute(fx.db);
}

/** The deleted-entries counter, summed per trigger. */
async function deletedByTrigger(): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  const points = (await sdk.metrics()).scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === METRIC.cleanupDeleted)
    .flatMap((metric) => metric.dataPoints as DataPoint<number>[]);
  for (const point of points) {
    const trigger = String(point.attributes[ATTR.cleanupTrigger]);
    totals[trigger] = (totals[trigger] ?? 0) + point.value;
  }
  return totals;
}

describe('idempotency-ledger/otel, cleanup', () => {
  it('makes a cleanupExpired run a span and counts what it deleted', async () => {
    const before = await deletedByTrigger();
    await insertExpired(uniqueKey('expired'), 7);
    const { deleted } = await cleanupExpired(fx.db, { batchSize: 3 });
    expect(deleted).toBe(7);
    const spans = sdk.spans().filter((span) => span.name === CLEANUP_SPAN_NAME);
    expect(spans).toHaveLength(1);
    expect(spans[0]?.attributes).toEqual({
      [ATTR.cleanupTrigger]: 'call',
      [ATTR.cleanupOutcome]: 'completed',
      [ATTR.cleanupSchema]: 'idempotency',
      [ATTR.cleanupDeleted]: 7,
      [ATTR.cleanupBatches]: 3,
    });
    const after = await deletedByTrigger();
    expect((after.call ?? 0) - (before.call ?? 0)).toBe(7);
    const durations = await sdk.histogramPoints(METRIC.cleanupDuration);
    expect(durations.some((point) => point.attributes[ATTR.cleanupOutcome] === 'completed')).toBe(
      true,
    );
  });

  it('makes each scheduled tick a root span', async () => {
    const before = await deletedByTrigger();
    await insertExpired(uniqueKey('scheduled'), 4);
    const ticked = deferred();
    const outer = sdk.tracerProvider.getTracer('test');
    const schedule = await outer.startActiveSpan('startup', async (startup) => {
      const started = scheduleCleanup(fx.db, {
        intervalMs: 60_000,
        onTick: () => ticked.resolve(),
      });
      startup.end();
      return started;
    });
    await ticked.promise;
    await schedule.stop();
    const tick = sdk.spans().find((span) => span.name === CLEANUP_SPAN_NAME);
    expect(tick?.attributes).toMatchObject({
      [ATTR.cleanupTrigger]: 'schedule',
      [ATTR.cleanupDeleted]: 4,
    });
    expect(tick?.parentSpanContext).toBeUndefined();
    const after = await deletedByTrigger();
    expect((after.schedule ?? 0) - (before.schedule ?? 0)).toBe(4);
  });

  it('marks a failed run as an error', async () => {
    await expect(cleanupExpired(fx.db, { schema: 'no_such_schema' })).rejects.toThrow();
    const span = sdk.spans().find((each) => each.name === CLEANUP_SPAN_NAME);
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    expect(span?.attributes).toMatchObject({
      [ATTR.cleanupOutcome]: 'failed',
      [ATTR.errorType]: 'ledger_schema',
    });
  });

  it('lets two instrumentations run side by side, each with its own spans', async () => {
    const second = instrumentIdempotency({ tracerProvider: sdk.tracerProvider });
    try {
      await cleanupExpired(fx.db);
      expect(sdk.spans().filter((span) => span.name === CLEANUP_SPAN_NAME)).toHaveLength(2);
    } finally {
      second.disable();
    }
    sdk.reset();
    await cleanupExpired(fx.db);
    expect(sdk.spans().filter((span) => span.name === CLEANUP_SPAN_NAME)).toHaveLength(1);
  });
});
