// Markdown tables for a person to read at a glance; the raw figures go to the JSON file.
import type { CleanupResult, LiveRun, TrafficPass } from './cleanup.ts';
import { median } from './measure.ts';
import type { ScaleResult } from './scale.ts';
import type { StorageResult } from './storage.ts';
import type { CellResult } from './throughput.ts';
import type { VariantId } from './variants.ts';

export const LABELS: Record<VariantId, string> = {
  bare: 'bare transaction (BEGIN; INSERT; COMMIT)',
  first: 'withIdempotency, first execution',
  'first-optimistic': "withIdempotency 'optimistic', first execution",
  replay: 'withIdempotency, replay',
  'replay-cached': 'withIdempotency, replay with ReplayCache',
  'hot-key': 'withIdempotency, hot key (16 duplicates at once)',
  'hot-key-optimistic': "withIdempotency 'optimistic', hot key (16 duplicates at once)",
  'powertools-first': 'Powertools + Redis, first execution',
  'powertools-replay': 'Powertools + Redis, replay',
};

// The Powertools variant each of ours is compared with.
export const POWERTOOLS_PEER: Partial<Record<VariantId, VariantId>> = {
  first: 'powertools-first',
  'first-optimistic': 'powertools-first',
  replay: 'powertools-replay',
  'replay-cached': 'powertools-replay',
};

export interface CellMedians {
  opsPerSec: number;
  p50: number;
  p99: number;
  pgRoundTrips: number;
  redisRoundTrips: number;
  nodeCores: number;
  machineBusy: number;
  walBytesPerOp: number;
}

/** Medians over the repetitions of one cell. */
export function cellMedians(cell: Pick<CellResult, 'runs'>): CellMedians {
  const of = (pick: (run: CellResult['runs'][number]) => number) => median(cell.runs.map(pick));
  return {
    opsPerSec: of((run) => run.opsPerSec),
    p50: of((run) => run.latency.p50),
    p99: of((run) => run.latency.p99),
    pgRoundTrips: of((run) => run.pgRoundTripsPerOp),
    redisRoundTrips: of((run) => run.redisRoundTripsPerOp),
    nodeCores: of((run) => run.cpu.nodeCores),
    machineBusy: of((run) => run.cpu.machineBusy),
    walBytesPerOp: of((run) => run.walBytesPerOp ?? Number.NaN),
  };
}

export function throughputTable(cells: CellResult[]): string {
  const find = (variant: VariantId, c: number) =>
    cells.find((cell) => cell.variant === variant && cell.concurrency === c);
  const rows: string[][] = [];
  for (const cell of [...cells].sort((a, b) => a.concurrency - b.concurrency)) {
    const m = cellMedians(cell);
    const bare = find('bare', cell.concurrency);
    const peerId = POWERTOOLS_PEER[cell.variant];
    const peer = peerId && find(peerId, cell.concurrency);
    rows.push([
      LABELS[cell.variant],
      String(cell.concurrency),
      int(m.opsPerSec),
      ms(m.p50),
      ms(m.p99),
      bare ? times(m.opsPerSec / cellMedians(bare).opsPerSec) : '–',
      peer ? times(m.opsPerSec / cellMedians(peer).opsPerSec) : '–',
      roundTrips(m),
      int(m.walBytesPerOp),
      m.nodeCores.toFixed(2),
      `${Math.round(m.machineBusy * 100)} %`,
    ]);
  }
  const headers = ['variant', 'c', 'ops/s', 'p50 ms', 'p99 ms', 'ops/s vs bare'];
  headers.push('vs Powertools', 'round trips/op', 'WAL B/op', 'node CPU (cores)', 'machine CPU');
  return markdownTable(headers, rows, 'llrrrrrlrrr');
}

export function hotKeyLines(cells: CellResult[]): string {
  return cells
    .filter((cell) => cell.variant === 'hot-key' || cell.variant === 'hot-key-optimistic')
    .map(hotKeyLine)
    .join('\n');
}

function hotKeyLine(cell: CellResult): string {
  const sum = (pick: (stats: NonNullable<CellResult['runs'][number]['hotKey']>) => number) =>
    cell.runs.reduce((total, run) => total + (run.hotKey ? pick(run.hotKey) : 0), 0);
  const batches = sum((s) => s.batches);
  const executed = sum((s) => s.executed);
  const charges = sum((s) => s.chargesWritten);
  const ok = executed === batches && charges === batches;
  return (
    `${LABELS[cell.variant]}: ${int(batches)} keys x ${cell.concurrency} concurrent calls; executed ${int(executed)}, ` +
    `charges written ${int(charges)}: ${ok ? 'exactly 1 per key ✓' : 'NOT 1 per key ✗'}`
  );
}

/** A cell whose runs sampled where the Postgres sessions were (pg_stat_activity). */
interface WaitsCell<V extends string> {
  variant: V;
  concurrency: number;
  runs: { waits?: Record<string, number> }[];
}

/**
 * Where Postgres sessions spent the run: average sessions per state, over the repetitions.
 * `labels` names each variant (default: the throughput section's).
 */
export function waitsTable<V extends string = VariantId>(
  cells: readonly WaitsCell<V>[],
  labels: Record<V, string> = LABELS as Record<V, string>,
): string {
  const rows = [...cells]
    .sort((a, b) => a.concurrency - b.concurrency)
    .map((cell) => {
      const total = new Map<string, number>();
      for (const run of cell.runs) {
        for (const [state, sessions] of Object.entries(run.waits ?? {})) {
          total.set(state, (total.get(state) ?? 0) + sessions / cell.runs.length);
        }
      }
      return [labels[cell.variant], String(cell.concurrency), topStates(total)];
    });
  return markdownTable(
    ['variant', 'c', 'Postgres sessions by state (average; top 4)'],
    rows,
    'lll',
  );
}

export function topStates(profile: Map<string, number> | Record<string, number>, count = 4) {
  const entries = profile instanceof Map ? [...profile] : Object.entries(profile);
  return entries
    .filter(([state]) => state !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([state, sessions]) => `${state} ${sessions.toFixed(1)}`)
    .join(' · ');
}

export function storageTable(result: StorageResult): string {
  const { written, optimistic, compact } = result;
  const line = (label: string, pick: (f: StorageResult['written']) => number) => [
    label,
    bytes(pick(written)),
    bytes(pick(optimistic)),
    bytes(pick(compact)),
  ];
  return markdownTable(
    [
      `per ledger row, ${result.responseJsonBytes}-byte response`,
      `written by withIdempotency (${int(written.rows)} rows)`,
      "written with 'optimistic'",
      'compact copy (1 INSERT per row)',
    ],
    [
      line('pg_column_size(row)', (f) => f.rowBytes),
      line('pg_column_size(response)', (f) => f.responseBytes),
      line('heap', (f) => f.perRow.heap),
      line('primary key (scope, key)', (f) => f.perRow.primaryKey),
      line('expiry index', (f) => f.perRow.expiryIndex),
      line('total on disk (heap + indexes)', (f) => f.perRow.total),
    ],
    'lrrr',
  );
}

export function scaleTable(result: ScaleResult): string {
  const rows = result.points.map((point) => {
    const pick = (runs: typeof point.claim, field: 'p50' | 'p99') =>
      ms(median(runs.map((run) => run.latency[field])));
    const size = point.sizes.heap + point.sizes.indexes;
    return [
      int(point.rows),
      `${(size / 2 ** 20).toFixed(1)} MiB`,
      pick(point.claim, 'p50'),
      pick(point.claim, 'p99'),
      pick(point.replay, 'p50'),
      pick(point.replay, 'p99'),
    ];
  });
  const [small, large] = result.points;
  const { ratios } = result;
  rows.push([
    `ratio ${compactCount(large.rows)} / ${compactCount(small.rows)}`,
    '',
    times(ratios.claimP50),
    times(ratios.claimP99),
    times(ratios.replayP50),
    times(ratios.replayP99),
  ]);
  const headers = ['ledger rows', 'heap + indexes', 'claim p50 ms', 'claim p99 ms'];
  headers.push('replay p50 ms', 'replay p99 ms');
  return markdownTable(headers, rows, 'lrrrrr');
}

export function cleanupTable(result: CleanupResult): string {
  const pass = (p: CleanupResult['alone']) =>
    `${int(p.rowsPerSec)} rows/s (${int(p.deleted)} rows in ${(p.ms / 1000).toFixed(1)} s; ` +
    `${int(p.walBytesPerRow)} B of WAL per row)`;
  const latency = (run: LiveRun | undefined) =>
    run === undefined
      ? ''
      : `p50 ${ms(run.latency.p50)} ms, p99 ${ms(run.latency.p99)} ms, ${int(run.opsPerSec)} ops/s`;
  const settings = (options: TrafficPass['options']) =>
    Object.keys(options).length === 0
      ? 'defaults'
      : Object.entries(options)
          .map(([name, value]) => `${name} ${value}`)
          .join(', ');
  const { live } = result;
  const traffic = `first executions, c=${live.concurrency}`;
  return markdownTable(
    ['cleanupExpired', ''],
    [
      ['alone (defaults)', pass(result.alone)],
      ...result.underTraffic.flatMap((p, i) => [
        [`live traffic without cleanup (${traffic})`, latency(live.without[i])],
        [`under live traffic (${settings(p.options)})`, pass(p.pass)],
        [`  live traffic meanwhile`, latency(p.during)],
        [`  during / without`, `p50 ${times(p.p50Ratio)}, p99 ${times(p.p99Ratio)}`],
        [`  Postgres sessions meanwhile`, topStates(p.during.waits, 3)],
      ]),
      ['live traffic without cleanup, after', latency(live.without.at(-1))],
      ['Postgres sessions without cleanup', topStates(live.without[0]?.waits ?? {}, 3)],
    ],
    'll',
  );
}

export function markdownTable(headers: string[], rows: string[][], align: string): string {
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length), 3),
  );
  const pad = (text: string, i: number) =>
    align[i] === 'r' ? text.padStart(widths[i] as number) : text.padEnd(widths[i] as number);
  const line = (cells: string[]) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = widths.map((width, i) =>
    align[i] === 'r' ? `${'-'.repeat(width - 1)}:` : '-'.repeat(width),
  );
  return [line(headers), `| ${rule.join(' | ')} |`, ...rows.map(line)].join('\n');
}

function roundTrips(m: CellMedians): string {
  const pg = `${trim(m.pgRoundTrips)} PG`;
  return m.redisRoundTrips > 0 ? `${pg} + ${trim(m.redisRoundTrips)} Redis` : pg;
}

const trim = (value: number) => String(Math.round(value * 10) / 10);
export const int = (value: number) => Math.round(value).toLocaleString('en-US');
export const ms = (value: number) => (value < 10 ? value.toFixed(2) : value.toFixed(1));
export const times = (value: number) => `${value.toFixed(2)}x`;
const bytes = (value: number) => `${Math.round(value)} B`;
const compactCount = (value: number) =>
  value >= 1e6 ? `${value / 1e6}M` : value >= 1e3 ? `${value / 1e3}k` : String(value);
