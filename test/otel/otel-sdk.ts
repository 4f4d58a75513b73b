/**
 * The real OpenTelemetry SDK, wired to in-memory exporters: spans as the SDK finishes them, and
 * metrics as a reader collects them, so tests read what an exporter would send.
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

/** A pull reader: `collect()` on demand, as a Prometheus scrape would. */
class CollectingReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface OtelSdk {
  tracerProvider: TracerProvider;
  meterProvider: MeterProvider;
  /** Spans finished since the last `reset()`. */
  spans(): ReadableSpan[];
  /** Every metric point collected now (cumulative since the SDK started). */
  metrics(): Promise<ResourceMetrics>;
  /** The histogram points of one instrument. */
  histogramPoints(name: string): Promise<DataPoint<Histogram>[]>;
  reset(): void;
  shutdown(): Promise<void>;
}

/**
 * Starts an SDK. A context manager is registered globally, as the Node SDK does: without one,
 * OpenTelemetry has no active context, and no span can have a parent.
 */
export function startOtelSdk(): OtelSdk {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const reader = new CollectingReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const metrics = async () => {
    const { resourceMetrics, errors } = await reader.collect();
    if (errors.length > 0) throw errors[0];
    return resourceMetrics;
  };
  return {
    tracerProvider,
    meterProvider,
    spans: () => exporter.getFinishedSpans(),
    metrics,
    async histogramPoints(name) {
      const found = (await metrics()).scopeMetrics
        .flatMap((scope) => scope.metrics)
        .filter((metric) => metric.descriptor.name === name);
      return found.flatMap((metric) => metric.dataPoints as DataPoint<Histogram>[]);
    },
    reset: () => exporter.reset(),
    async shutdown() {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      context.disable();
    },
  };
}
