// The instrumentation table: each path with nothing subscribed, with an empty subscriber, and with
// idempotency-ledger/otel, as ratios of the same path with nothing subscribed, from one run.
import {
  INSTRUMENTATION_VARIANTS,
  INSTRUMENTED_PATHS,
  type InstrumentationCell,
  type InstrumentationVariant,
} from './instrumentation.ts';
import { median } from './measure.ts';
import { int, markdownTable, times } from './report.ts';

export const INSTRUMENTATION_NOTES = [
  '"events": a subscriber that does nothing on the call channel (the core builds the event and',
  'hashes the key). "otel": instrumentIdempotency on the OpenTelemetry SDK, spans batched to an',
  'in-memory exporter, metrics aggregated, AsyncLocalStorage context manager. Ratios are ops/s',
  'against "off" in the same run; Node CPU per call in microseconds.',
  '',
].join('\n');

const PATH_LABELS = {
  first: 'first execution',
  replay: 'replay',
  'replay-cached': 'replay with ReplayCache',
} as const;

export function instrumentationTable(cells: InstrumentationCell[]): string {
  const rows = INSTRUMENTED_PATHS.map(({ path, concurrency }) => {
    const of = (variant: InstrumentationVariant) => {
      const cell = cells.find(
        (each) =>
          each.path === path && each.concurrency === concurrency && each.variant === variant,
      ) as InstrumentationCell;
      const opsPerSec = median(cell.runs.map((run) => run.opsPerSec));
      const cpuUsPerOp = median(
        cell.runs.map((run) => (run.cpu.nodeCores * 1_000_000) / (run.opsPerSec || 1)),
      );
      const spansPerCall = median(cell.runs.map((run, i) => (cell.spans[i] ?? 0) / (run.ops || 1)));
      return { opsPerSec, cpuUsPerOp, spansPerCall };
    };
    const [off, events, otel] = INSTRUMENTATION_VARIANTS.map(of) as [
      ReturnType<typeof of>,
      ReturnType<typeof of>,
      ReturnType<typeof of>,
    ];
    return [
      `${PATH_LABELS[path]}, c=${concurrency}`,
      int(off.opsPerSec),
      times(events.opsPerSec / off.opsPerSec),
      times(otel.opsPerSec / off.opsPerSec),
      `${int(off.cpuUsPerOp)} / ${int(events.cpuUsPerOp)} / ${int(otel.cpuUsPerOp)}`,
      otel.spansPerCall.toFixed(2),
    ];
  });
  return markdownTable(
    [
      'path',
      'off, ops/s',
      'events',
      'otel',
      'Node CPU µs/call (off / events / otel)',
      'spans/call',
    ],
    rows,
    'lrrrrr',
  );
}
