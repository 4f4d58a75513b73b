// Markdown for the round-trip-time section: the added RTT as verified, the proxy's own cost, and
// each path's throughput as ratios (to the bare transaction, to Powertools, to itself direct).
import { cellMedians, LABELS, markdownTable, ms, POWERTOOLS_PEER, times } from './report.ts';
import type { RttCell, RttResult, RttVariant } from './rtt.ts';
import type { VariantId } from './variants.ts';

type Measured = Exclude<RttResult, { skipped: string }>;

export const RTT_NOTES = [
  'Direct, and through delay-proxy (benchmarks/rtt-proxy/) with the same one-way delay in front',
  'of Postgres and of Redis. Every figure is a ratio of medians of ops/s: "vs direct" compares a',
  'path with itself without the added RTT. "RTT share" (c=1): statements x added RTT (as measured',
  'below) over the p50 at that RTT; near 1 the path waits for flights, near 0 for work.',
  '"per flight": (p50 at that RTT - p50 direct) / (statements x added RTT); 1 = one RTT each.',
  '',
].join('\n');

const ORDER: VariantId[] = [
  'bare',
  'first',
  'first-optimistic',
  'replay',
  'powertools-first',
  'powertools-replay',
];

function find(cells: RttCell[], level: string, variant: RttVariant, c: number) {
  return cells.find((x) => x.level === level && x.variant === variant && x.concurrency === c);
}

/** Median p50 of one at-a-time round trip on a route: `SELECT 1` or Redis PING. */
function pingP50(cells: RttCell[], level: string, variant: 'select-1' | 'redis-ping') {
  const cell = find(cells, level, variant, 1);
  return cell ? cellMedians(cell).p50 : Number.NaN;
}

/** The round trip a route adds to direct, as measured: pg and Redis apart. */
function addedRtt(cells: RttCell[], level: string) {
  const added = (variant: 'select-1' | 'redis-ping') =>
    pingP50(cells, level, variant) - pingP50(cells, 'direct', variant);
  return { pg: added('select-1'), redis: added('redis-ping') };
}

export function rttPingTable(result: Measured): string {
  const { cells } = result;
  const levels = [...result.levels, { name: result.proxyOverheadLevel, oneWayDelayUs: 0 }];
  const rows = levels.map(({ name, oneWayDelayUs }) => {
    const added = addedRtt(cells, name);
    const redis = pingP50(cells, name, 'redis-ping');
    return [
      name,
      oneWayDelayUs === undefined ? '–' : ms((2 * oneWayDelayUs) / 1000),
      ms(pingP50(cells, name, 'select-1')),
      oneWayDelayUs === undefined ? '–' : ms(added.pg),
      Number.isNaN(redis) ? '–' : ms(redis),
      oneWayDelayUs === undefined || Number.isNaN(redis) ? '–' : ms(added.redis),
    ];
  });
  return markdownTable(
    ['route', 'configured RTT ms', 'SELECT 1 p50 ms', 'added', 'Redis PING p50 ms', 'added'],
    rows,
    'lrrrrr',
  );
}

/** What the proxy costs by itself: no delay against direct. */
export function rttOverheadLine(result: Measured): string {
  const { cells, proxyOverheadLevel: level } = result;
  const direct = pingP50(cells, 'direct', 'select-1');
  const proxy = pingP50(cells, level, 'select-1');
  const ops = (at: string, c: number) => {
    const cell = find(cells, at, 'bare', c);
    return cell ? cellMedians(cell).opsPerSec : Number.NaN;
  };
  const bare = (c: number) => times(ops(level, c) / ops('direct', c));
  return (
    `Proxy without delay vs direct: SELECT 1 p50 ${times(proxy / direct)} ` +
    `(+${ms(proxy - direct)} ms); bare transaction ops/s ${bare(1)} at c=1, ` +
    `${bare(16)} at c=16.`
  );
}

export function rttTable(result: Measured): string {
  const { cells, levels } = result;
  const rows: string[][] = [];
  for (const level of levels) {
    for (const variant of ORDER) {
      const at = (c: number) => find(cells, level.name, variant, c);
      if (!at(1)) continue;
      const perC = [1, 16].flatMap((c) => {
        const cell = at(c);
        if (!cell) return ['', '', ''];
        const m = cellMedians(cell);
        const ratio = (other: RttCell | undefined) =>
          other ? times(m.opsPerSec / cellMedians(other).opsPerSec) : '–';
        const peer = POWERTOOLS_PEER[variant];
        return [
          ratio(find(cells, level.name, 'bare', c)),
          ratio(peer && find(cells, level.name, peer, c)),
          level.oneWayDelayUs === undefined ? '–' : ratio(find(cells, 'direct', variant, c)),
        ];
      });
      const m1 = cellMedians(at(1) as RttCell);
      const direct1 = find(cells, 'direct', variant, 1);
      let share = '–';
      let perFlight = '–';
      if (level.oneWayDelayUs !== undefined && direct1) {
        const added = addedRtt(cells, level.name);
        const flights = m1.pgRoundTrips * added.pg + m1.redisRoundTrips * added.redis;
        share = (flights / m1.p50).toFixed(2);
        perFlight = ((m1.p50 - cellMedians(direct1).p50) / flights).toFixed(2);
      }
      rows.push([level.name, LABELS[variant], statements(m1), ...perC, share, perFlight]);
    }
  }
  const headers = ['RTT', 'variant', 'statements', 'c=1 vs bare', 'vs Powertools', 'vs direct'];
  headers.push('c=16 vs bare', 'vs Powertools', 'vs direct', 'RTT share', 'per flight');
  return markdownTable(headers, rows, 'lllrrrrrrrr');
}

function statements(m: { pgRoundTrips: number; redisRoundTrips: number }): string {
  const pg = String(Math.round(m.pgRoundTrips * 10) / 10);
  return m.redisRoundTrips > 0 ? `${pg} + ${Math.round(m.redisRoundTrips * 10) / 10} Redis` : pg;
}
