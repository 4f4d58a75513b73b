// What instrumentation costs a call: the same first executions and replays with nothing
// subscribed, with a subscriber that does nothing (the core's own cost: building and publishing
// the event, hashing the key), and with idempotency-ledger/otel on the real OpenTelemetry SDK
// (spans batched to an in-memory exporter, metrics aggregated by a reader, a context manager).
// Each cell switches its variant on before it runs and off after, so cells interleave freely.
import { randomUUID } from 'node:crypto';
import { tracingChannel } from 'node:diagnostics_channel';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import type { Kysely } from 'kysely';
import {
  type BenchDB,
  type ChargeRequest,
  insertCharge,
  newChargeRequest,
  SCOPE,
} from './business.ts';
import { importBuilt, ReplayCache, WITH_IDEMPOTENCY_CHANNEL, withIdempotency } from './library.ts';
import { type CellRun, runWorkers } from './measure.ts';

type Otel = typeof import('../src/otel/index.ts');

export type InstrumentationVariant = 'off' | 'events' | 'otel';
export type InstrumentedPath = 'first' | 'replay' | 'replay-cached';
export const INSTRUMENTATION_VARIANTS: readonly InstrumentationVariant[] = [
  'off',
  'events',
  'otel',
];
/** The paths, each at the concurrency where the library's CPU shows most. */
export const INSTRUMENTED_PATHS: readonly { path: InstrumentedPath; concurrency: number }[] = [
  { path: 'first', concurrency: 1 },
  { path: 'first', concurrency: 16 },
  { path: 'replay', concurrency: 16 },
  { path: 'replay-cached', concurrency: 16 },
];

export interface InstrumentationSettings {
  repetitions: number;
  warmupMs: number;
  cellMs: number;
}

export interface InstrumentationCell {
  variant: InstrumentationVariant;
  path: InstrumentedPath;
  concurrency: number;
  runs: CellRun[];
  /** Spans exported per run (the otel variant): about one per call, or it was not on. */
  spans: number[];
}

/** A pull reader that is never pulled: the SDK still aggregates every point it is given. */
class IdleReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Switch {
  on(): void;
  /** Switches it off; returns the spans it exported meanwhile. */
  off(): Promise<number>;
}

async function switches(): Promise<Record<InstrumentationVariant, Switch>> {
  const otel = await importBuilt<Otel>('otel/index.js');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
  let instrumentation: { disable(): void } | undefined;
  const channel = tracingChannel(WITH_IDEMPOTENCY_CHANNEL);
  const nothing = () => {};
  return {
    off: { on: nothing, off: async () => 0 },
    events: {
      on: () => channel.asyncEnd.subscribe(nothing),
      off: async () => {
        channel.asyncEnd.unsubscribe(nothing);
        return 0;
      },
    },
    otel: {
      on: () => {
        instrumentation = otel.instrumentIdempotency({ tracerProvider, meterProvider });
      },
      off: async () => {
        instrumentation?.disable();
        await tracerProvider.forceFlush();
        const spans = exporter.getFinishedSpans().length;
        exporter.reset();
        return spans;
      },
    },
  };
}

export async function runInstrumentation(
  db: Kysely<BenchDB>,
  settings: InstrumentationSettings,
  progress: (line: string) => void,
): Promise<InstrumentationCell[]> {
  const toggles = await switches();
  const replayKeys = Array.from({ length: 16 }, () => ({
    key: randomUUID(),
    request: newChargeRequest(),
  }));
  for (const { key, request } of replayKeys) await charge(db, key, request);
  const replayCache = new ReplayCache();

  const cells: InstrumentationCell[] = INSTRUMENTED_PATHS.flatMap(({ path, concurrency }) =>
    INSTRUMENTATION_VARIANTS.map((variant) => ({
      variant,
      path,
      concurrency,
      runs: [],
      spans: [],
    })),
  );
  const runCell = async (cell: InstrumentationCell, durationMs: number) => {
    const toggle = toggles[cell.variant];
    let next = 0;
    const call = async () => {
      if (cell.path === 'first') {
        const { replayed } = await charge(db, randomUUID(), newChargeRequest());
        if (replayed) throw new Error('a fresh key replayed');
        return;
      }
      const { key, request } = replayKeys[next++ % replayKeys.length] as (typeof replayKeys)[0];
      const cache = cell.path === 'replay-cached' ? replayCache : undefined;
      const { replayed } = await charge(db, key, request, cache);
      if (!replayed) throw new Error('a completed key executed again');
    };
    toggle.on();
    let run: CellRun;
    try {
      run = await runWorkers(cell.concurrency, durationMs, call);
    } catch (error) {
      // Off even when the run failed: the next cell may be another variant.
      await toggle.off();
      throw error;
    }
    return { run, spans: await toggle.off() };
  };

  progress(`instrumentation warm-up: ${cells.length} cells x ${settings.warmupMs} ms`);
  for (const cell of cells) await runCell(cell, settings.warmupMs);
  for (let rep = 0; rep < settings.repetitions; rep++) {
    progress(`instrumentation ${rep + 1}/${settings.repetitions}: ${cells.length} cells`);
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[(i + rep) % cells.length] as InstrumentationCell;
      const { run, spans } = await runCell(cell, settings.cellMs);
      cell.runs.push(run);
      cell.spans.push(spans);
    }
  }
  return cells;
}

function charge(
  db: Kysely<BenchDB>,
  key: string,
  request: ChargeRequest,
  replayCache?: InstanceType<typeof ReplayCache>,
) {
  return withIdempotency(db, { scope: SCOPE, key, request, replayCache }, (trx) =>
    insertCharge(trx, request),
  );
}
