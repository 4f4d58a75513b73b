/**
 * idempotency-ledger/otel against the real OpenTelemetry SDK: every outcome of withIdempotency as
 * a span and as metric points, with the call's span between the caller's and fn's, and no raw key
 * anywhere unless the application opts in.
 */
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  AlwaysOffSampler,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  configureKeyPrivacy,
  hashIdempotencyKey,
  ReplayCache,
  withIdempotency,
} from '../../src/index.ts';
import {
  ATTR,
  CALL_SPAN_NAME,
  type IdempotencyInstrumentation,
  instrumentIdempotency,
  METRIC,
  SPAN_EVENT,
} from '../../src/otel/index.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from '../support/ledger-fixture.ts';
import { type OtelSdk, startOtelSdk } from './otel-sdk.ts';

const fx = useLedgerFixture();
let sdk: OtelSdk;
let instrumentation: IdempotencyInstrumentation | undefined;

beforeAll(() => {
  sdk = startOtelSdk();
});
afterAll(async () => {
  await sdk.shutdown();
});
beforeEach(() => {
  sdk.reset();
});
afterEach(() => {
  instrumentation?.disable();
  instrumentation = undefined;
  configureKeyPrivacy({ includeRawKeys: false });
});

function instrument(options: Parameters<typeof instrumentIdempotency>[0] = {}) {
  instrumentation = instrumentIdempotency({
    tracerProvider: sdk.tracerProvider,
    meterProvider: sdk.meterProvider,
    ...options,
  });
  return instrumentation;
}

/** The calls' spans finished since the test began. */
function callSpans(): ReadableSpan[] {
  return sdk.spans().filter((span) => span.name === CALL_SPAN_NAME);
}

function onlyCallSpan(): ReadableSpan {
  const spans = callSpans();
  expect(spans).toHaveLength(1);
  return spans[0] as ReadableSpan;
}

/** Calls counted by the call-duration histogram, per outcome (cumulative over the file). */
async function callsByOutcome(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const point of await sdk.histogramPoints(METRIC.callDuration)) {
    const outcome = String(point.attributes[ATTR.outcome]);
    counts[outcome] = (counts[outcome] ?? 0) + point.value.count;
  }
  return counts;
}

/** Everything an exporter would send: every span and every metric point, as JSON. */
async function exportedTelemetry(): Promise<string> {
  const spans = sdk.spans().map((span) => ({
    name: span.name,
    attributes: span.attributes,
    status: span.status,
    events: span.events,
  }));
  return JSON.stringify({ spans, metrics: await sdk.metrics() });
}

describe('idempotency-ledger/otel', () => {
  it('makes an execution a span between the caller and fn, and counts it', async () => {
    instrument();
    const before = await callsByOutcome();
    const key = uniqueKey();
    const tracer = sdk.tracerProvider.getTracer('test');
    let spanInFn: string | undefined;
    await tracer.startActiveSpan('POST /payments', async (request) => {
      await withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
        spanInFn = trace.getActiveSpan()?.spanContext().spanId;
        return createPayment('s', key)(trx);
      });
      request.end();
    });
    const span = onlyCallSpan();
    const parent = sdk.spans().find((each) => each.name === 'POST /payments');
    expect(span.parentSpanContext?.spanId).toBe(parent?.spanContext().spanId);
    expect(spanInFn).toBe(span.spanContext().spanId);
    expect(span.kind).toBe(SpanKind.INTERNAL);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.attributes).toEqual({
      [ATTR.transaction]: 'library',
      [ATTR.attempts]: 1,
      [ATTR.replayed]: false,
      [ATTR.outcome]: 'executed',
      [ATTR.scope]: 's',
      [ATTR.keyHash]: hashIdempotencyKey(key),
      [ATTR.onConcurrent]: 'wait',
      [ATTR.metInFlight]: false,
      [ATTR.expiredEntry]: false,
    });
    expect(span.events).toEqual([]);
    expect(await fx.countPayments(key)).toBe(1);

    const after = await callsByOutcome();
    expect((after.executed ?? 0) - (before.executed ?? 0)).toBe(1);
    const phases = (await sdk.histogramPoints(METRIC.phaseDuration)).map((point) =>
      String(point.attributes[ATTR.phase]),
    );
    expect(new Set(phases)).toEqual(new Set(['claim', 'fn', 'record']));
  });

  it('marks replays from the ledger and from the ReplayCache', async () => {
    instrument();
    const key = uniqueKey();
    const replayCache = new ReplayCache();
    const first = await withIdempotency(
      fx.db,
      { scope: 's', key, replayCache },
      createPayment('s', key),
    );
    sdk.reset();
    const fromLedger = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(onlyCallSpan().attributes).toMatchObject({
      [ATTR.outcome]: 'replayed',
      [ATTR.replayed]: true,
      [ATTR.replayedFrom]: 'ledger',
      [ATTR.attempts]: 0,
    });
    sdk.reset();
    const fromCache = await withIdempotency(
      fx.db,
      { scope: 's', key, replayCache },
      createPayment('s', key),
    );
    expect(onlyCallSpan().attributes).toMatchObject({
      [ATTR.outcome]: 'replayed',
      [ATTR.replayedFrom]: 'replay_cache',
    });
    expect(JSON.stringify(fromLedger.response)).toBe(JSON.stringify(first.response));
    expect(JSON.stringify(fromCache.response)).toBe(JSON.stringify(first.response));
    expect(await fx.countPayments(key)).toBe(1);

    const replays = (await sdk.histogramPoints(METRIC.callDuration)).filter(
      (point) => point.attributes[ATTR.outcome] === 'replayed',
    );
    expect(new Set(replays.map((point) => point.attributes[ATTR.replayedFrom]))).toEqual(
      new Set(['ledger', 'replay_cache']),
    );
  });

  it('tells a conflict and a reused key, without marking either as an error', async () => {
    instrument();
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    sdk.reset();
    await expect(
      withIdempotency(fx.db, { scope: 's', key, onConcurrent: 'reject' }, async () => 0),
    ).rejects.toMatchObject({ status: 409 });
    const conflict = onlyCallSpan();
    expect(conflict.attributes).toMatchObject({
      [ATTR.outcome]: 'conflict',
      [ATTR.conflictReason]: 'in_flight',
      [ATTR.replayed]: false,
      [ATTR.metInFlight]: true,
    });
    expect(conflict.events.map((event) => event.name)).toEqual([SPAN_EVENT.metInFlight]);
    // A 409 or a 422 is the client's retry doing what it should not: the call worked as designed.
    expect(conflict.status.code).toBe(SpanStatusCode.UNSET);
    release();
    await first;

    sdk.reset();
    await expect(
      withIdempotency(fx.db, { scope: 's', key, request: { other: true } }, async () => 0),
    ).rejects.toMatchObject({ status: 422 });
    expect(onlyCallSpan().attributes).toMatchObject({ [ATTR.outcome]: 'key_reused' });
    expect(onlyCallSpan().status.code).toBe(SpanStatusCode.UNSET);
    expect(await fx.countPayments(key)).toBe(1);

    const conflicts = (await sdk.histogramPoints(METRIC.callDuration)).filter(
      (point) => point.attributes[ATTR.outcome] === 'conflict',
    );
    expect(conflicts.map((point) => point.attributes[ATTR.conflictReason])).toContain('in_flight');
  });

  it('marks a key taken over from an expired entry with a span event', async () => {
    instrument();
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    await sql`
      update idempotency.ledger set expires_at = statement_timestamp() - interval '1 second'
       where key = ${key}`.execute(fx.db);
    sdk.reset();
    await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    const span = onlyCallSpan();
    expect(span.attributes).toMatchObject({
      [ATTR.outcome]: 'executed',
      [ATTR.expiredEntry]: true,
    });
    expect(span.events.map((event) => event.name)).toEqual([SPAN_EVENT.expiredEntry]);
    expect(await fx.countPayments(key)).toBe(2);
  });

  it('marks a failed call as an error by its type, never by its message', async () => {
    instrument();
    const key = uniqueKey();
    const secret = `card 4242 for ${key}`;
    await expect(
      withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
        await createPayment('s', key)(trx);
        throw new TypeError(secret);
      }),
    ).rejects.toThrow(secret);
    const thrown = onlyCallSpan();
    expect(thrown.status).toEqual({ code: SpanStatusCode.ERROR, message: 'TypeError' });
    expect(thrown.attributes).toMatchObject({
      [ATTR.outcome]: 'failed',
      [ATTR.errorType]: 'TypeError',
    });

    sdk.reset();
    await expect(
      withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
        await sql`select 1 / 0`.execute(trx);
      }),
    ).rejects.toMatchObject({ code: '22012' });
    expect(onlyCallSpan().attributes).toMatchObject({ [ATTR.errorType]: '22012' });
    expect(await fx.countPayments(key)).toBe(0);
    // The whole message, not a fragment of it: digits alone turn up in timings and timestamps.
    const telemetry = await exportedTelemetry();
    expect(telemetry).not.toContain(secret);
    expect(telemetry).not.toContain('card 4242');

    const failed = (await sdk.histogramPoints(METRIC.callDuration)).filter(
      (point) => point.attributes[ATTR.outcome] === 'failed',
    );
    expect(new Set(failed.map((point) => point.attributes[ATTR.errorType]))).toEqual(
      new Set(['TypeError', '22012']),
    );
  });

  it('reports an invalid call without the scope or key it was given', async () => {
    instrument();
    const badKey = `bad key ${'x'.repeat(300)}`;
    await expect(
      withIdempotency(fx.db, { scope: 'tenant-7', key: badKey }, async () => 0),
    ).rejects.toMatchObject({ status: 400 });
    const span = onlyCallSpan();
    expect(span.attributes[ATTR.outcome]).toBe('invalid_key');
    expect(span.attributes[ATTR.scope]).toBeUndefined();
    expect(span.attributes[ATTR.keyHash]).toBeUndefined();
    expect(await exportedTelemetry()).not.toContain('bad key');
  });

  it('never exports a raw key, unless the application opts in', async () => {
    instrument({ scopeLabel: (scope) => scope });
    const keys = [uniqueKey('secret'), uniqueKey('secret'), uniqueKey('secret')];
    const [executed, failed, conflicting] = keys as [string, string, string];
    await withIdempotency(fx.db, { scope: 's', key: executed }, createPayment('s', executed));
    await withIdempotency(fx.db, { scope: 's', key: executed }, createPayment('s', executed));
    await expect(
      withIdempotency(fx.db, { scope: 's', key: failed }, async () => {
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    const { first, release } = await startHeldCall(fx.db, 's', conflicting);
    await expect(
      withIdempotency(
        fx.db,
        { scope: 's', key: conflicting, onConcurrent: 'reject' },
        async () => 0,
      ),
    ).rejects.toMatchObject({ status: 409 });
    release();
    await first;
    const telemetry = await exportedTelemetry();
    for (const key of keys) expect(telemetry).not.toContain(key);
    expect(telemetry).toContain(hashIdempotencyKey(executed));

    sdk.reset();
    configureKeyPrivacy({ includeRawKeys: true });
    const shown = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key: shown }, createPayment('s', shown));
    expect(onlyCallSpan().attributes[ATTR.key]).toBe(shown);
  });

  it('labels metric points by scope only through the mapper it is given', async () => {
    instrument();
    const unlabelled = uniqueKey();
    await withIdempotency(
      fx.db,
      { scope: 'merchant:901:refund', key: unlabelled },
      createPayment('merchant:901:refund', unlabelled),
    );
    const scopesOf = async () =>
      (await sdk.histogramPoints(METRIC.callDuration)).map((point) => point.attributes[ATTR.scope]);
    expect(await scopesOf()).not.toContain('merchant:901:refund');
    // The span carries the scope: one per call, not one time series per tenant.
    expect(onlyCallSpan().attributes[ATTR.scope]).toBe('merchant:901:refund');
    instrumentation?.disable();

    instrument({ scopeLabel: (scope) => scope.split(':').at(-1) });
    const labelled = uniqueKey();
    await withIdempotency(
      fx.db,
      { scope: 'merchant:902:refund', key: labelled },
      createPayment('merchant:902:refund', labelled),
    );
    const scopes = await scopesOf();
    expect(scopes).toContain('refund');
    expect(scopes.some((scope) => String(scope).includes('902'))).toBe(false);
    instrumentation?.disable();

    // A mapper that throws leaves the label off; the call and its telemetry go on.
    instrument({
      scopeLabel: () => {
        throw new Error('mapper bug');
      },
    });
    sdk.reset();
    const unmapped = uniqueKey();
    const result = await withIdempotency(
      fx.db,
      { scope: 'merchant:903:refund', key: unmapped },
      createPayment('merchant:903:refund', unmapped),
    );
    expect(result.replayed).toBe(false);
    expect(onlyCallSpan().attributes[ATTR.outcome]).toBe('executed');
  });

  it('counts calls whose spans the sampler drops', async () => {
    const unsampled = new TracerProvider({
      sampler: new AlwaysOffSampler(),
      spanProcessors: [new SimpleSpanProcessor({ exporter: new InMemorySpanExporter() })],
    });
    instrument({ tracerProvider: unsampled });
    const before = await callsByOutcome();
    let activeInFn: boolean | undefined;
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      activeInFn = trace.getActiveSpan()?.isRecording();
      return createPayment('s', key)(trx);
    });
    expect(activeInFn).toBe(false);
    expect(callSpans()).toHaveLength(0);
    const after = await callsByOutcome();
    expect((after.executed ?? 0) - (before.executed ?? 0)).toBe(1);
    await unsampled.shutdown();
  });

  it('stops when disabled, and the calls go on', async () => {
    const handle = instrument();
    handle.disable();
    handle.disable();
    const before = await callsByOutcome();
    const key = uniqueKey();
    const { replayed } = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(replayed).toBe(false);
    expect(callSpans()).toHaveLength(0);
    expect(await callsByOutcome()).toEqual(before);
    expect(await fx.countPayments(key)).toBe(1);
  });
});
