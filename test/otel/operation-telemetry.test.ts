/**
 * idempotency-ledger/otel for operations, against the real OpenTelemetry SDK: a span per
 * runOperation call with its lease changes as span events, metrics by operation and outcome, and
 * gauges of the operations in progress read from the database.
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { DataPoint } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashIdempotencyKey } from '../../src/index.ts';
import {
  OperationLeaseLostError,
  releaseOperation,
  runOperation,
} from '../../src/operations/index.ts';
import {
  ATTR,
  type IdempotencyInstrumentation,
  instrumentIdempotency,
  METRIC,
  RUN_OPERATION_SPAN_NAME,
} from '../../src/otel/index.ts';
import { pausableOperation } from '../operations/pausable-operation.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { type OtelSdk, startOtelSdk } from './otel-sdk.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m13:otel';
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
    observe: { db: fx.db },
  });
});
afterEach(() => {
  instrumentation.disable();
});

function operationSpans(): ReadableSpan[] {
  return sdk.spans().filter((span) => span.name === RUN_OPERATION_SPAN_NAME);
}

/** The value of each gauge of one instrument name at this collection. */
async function gauge(name: string): Promise<number | undefined> {
  const points = (await sdk.metrics()).scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric) => metric.dataPoints as DataPoint<number>[]);
  return points.at(-1)?.value;
}

async function leaseCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const points = (await sdk.metrics()).scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === METRIC.operationLeaseEvents)
    .flatMap((metric) => metric.dataPoints as DataPoint<number>[]);
  for (const point of points) counts[String(point.attributes[ATTR.leaseKind])] = point.value;
  return counts;
}

describe('idempotency-ledger/otel, operations', () => {
  it('makes a run a span around its steps, with its lease as span events', async () => {
    const key = uniqueKey();
    const before = await leaseCounts();
    let activeInStep: string | undefined;
    const operation = pausableOperation(async () => {
      activeInStep = trace.getActiveSpan()?.spanContext().spanId;
    });
    const tracer = sdk.tracerProvider.getTracer('test');
    await tracer.startActiveSpan('POST /payments', async (request) => {
      await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
      request.end();
    });
    const [span] = operationSpans();
    const parent = sdk.spans().find((each) => each.name === 'POST /payments');
    expect(span?.parentSpanContext?.spanId).toBe(parent?.spanContext().spanId);
    expect(activeInStep).toBe(span?.spanContext().spanId);
    expect(span?.attributes).toEqual({
      [ATTR.operation]: 'pausable',
      [ATTR.outcome]: 'finished',
      [ATTR.replayed]: false,
      [ATTR.operationHeldWaits]: 0,
      [ATTR.scope]: SCOPE,
      [ATTR.keyHash]: hashIdempotencyKey(key),
      [ATTR.operationResumed]: false,
      [ATTR.operationFencingToken]: '1',
    });
    expect(span?.events.map((event) => event.name)).toEqual(['lease.acquired']);
    expect(span?.status.code).toBe(SpanStatusCode.UNSET);
    const after = await leaseCounts();
    expect((after.acquired ?? 0) - (before.acquired ?? 0)).toBe(1);
    const durations = await sdk.histogramPoints(METRIC.operationDuration);
    expect(
      durations.some(
        (point) =>
          point.attributes[ATTR.operation] === 'pausable' &&
          point.attributes[ATTR.outcome] === 'finished',
      ),
    ).toBe(true);
    expect(JSON.stringify(sdk.spans().map((each) => each.attributes))).not.toContain(key);
  });

  it('marks a fenced-off attempt as an error, and the takeover on the retry', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    let first = true;
    const operation = pausableOperation(async () => {
      if (!first) return;
      first = false;
      inside.resolve();
      await release.promise;
    });
    const attempt = runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    await inside.promise;
    await releaseOperation(fx.db, { scope: SCOPE, key });
    release.resolve();
    await expect(attempt).rejects.toBeInstanceOf(OperationLeaseLostError);
    await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });

    const [lost, retry] = operationSpans();
    expect(lost?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'lease_lost' });
    expect(lost?.attributes).toMatchObject({ [ATTR.outcome]: 'lease_lost' });
    expect(lost?.events.map((event) => event.name)).toEqual(['lease.acquired', 'lease.fenced_off']);
    expect(retry?.attributes).toMatchObject({
      [ATTR.outcome]: 'finished',
      [ATTR.operationResumed]: true,
      [ATTR.operationFencingToken]: '3',
    });
    expect(retry?.events.map((event) => event.name)).toEqual(['lease.taken_over']);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('reads the operations in progress, the abandoned ones and the oldest age from the database', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    let first = true;
    const operation = pausableOperation(async () => {
      if (!first) return;
      first = false;
      inside.resolve();
      await release.promise;
    });
    expect(await gauge(METRIC.operationsInProgress)).toBe(0);
    expect(await gauge(METRIC.operationsOldestAge)).toBe(0);
    const attempt = runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    await inside.promise;
    expect(await gauge(METRIC.operationsInProgress)).toBe(1);
    expect(await gauge(METRIC.operationsAbandoned)).toBe(0);
    expect(await gauge(METRIC.operationsOldestAge)).toBeGreaterThan(0);
    await releaseOperation(fx.db, { scope: SCOPE, key });
    expect(await gauge(METRIC.operationsAbandoned)).toBe(1);
    release.resolve();
    await expect(attempt).rejects.toBeInstanceOf(OperationLeaseLostError);
    await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    expect(await gauge(METRIC.operationsInProgress)).toBe(0);
  });
});
