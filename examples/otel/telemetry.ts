/**
 * The OpenTelemetry SDK, set up as a service would: spans and metrics exported over OTLP/HTTP to
 * a collector (or any backend that takes OTLP: Jaeger, Grafana Tempo and Mimir, Honeycomb...),
 * then idempotency-ledger's instrumentation on top.
 */
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { instrumentIdempotency } from '../../src/otel/index.ts';

export interface Telemetry {
  /** Exports what is buffered, then stops: call it before the process exits. */
  shutdown(): Promise<void>;
}

/**
 * Registers the SDK globally and instruments idempotency-ledger.
 *
 * @param endpoint the OTLP/HTTP base URL, e.g. `http://localhost:4318`
 */
export function startTelemetry(endpoint: string, serviceName: string): Telemetry {
  const resource = resourceFromAttributes({ 'service.name': serviceName });
  // The context manager is what makes a span active across awaits: without it, no span has a
  // parent, and the spans a withIdempotency call makes do not nest under it.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const tracerProvider = new TracerProvider({
    resource,
    spanProcessors: [
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }) }),
    ],
  });
  trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${endpoint}/v1/metrics` }),
        exportIntervalMillis: 10_000,
      }),
    ],
  });
  metrics.setGlobalMeterProvider(meterProvider);

  const instrumentation = instrumentIdempotency({
    // Scopes here are '<merchant>:<operation>': metrics keep the operation, not the merchant.
    scopeLabel: (scope) => scope.split(':').at(-1),
  });
  return {
    async shutdown() {
      instrumentation.disable();
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      context.disable();
    },
  };
}
