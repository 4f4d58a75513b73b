// The HTTP section's table: one row per framework and concurrency, the three routes side by side.
import { median } from '../measure.ts';
import { int, markdownTable, ms, times } from '../report.ts';
import type { HttpCellResult, HttpResult, HttpRoute } from './run-http.ts';

export const HTTP_NOTES = [
  'POST of a JSON charge: parsed and validated (zod), one http_charges row inserted in its own',
  'transaction, 201 with a JSON body and Location. "bare" is the same route without the adapter;',
  '"first" sends a fresh Idempotency-Key with every request, "replay" one completed key (and its',
  'body) again and again; bare requests carry a key too, unread. Load: autocannon in the',
  'benchmark process, c keep-alive connections; servers: a child process, one pg pool of 16 for',
  'all frameworks. Ratios compare req/s. Server CPU: the server process only; machine CPU: the',
  'share of all cores busy (Postgres, the load generator, anything else running).',
  '',
].join('\n');

interface Medians {
  reqPerSec: number;
  p50: number;
  p99: number;
  serverCores: number;
  machineBusy: number;
}

function medians(cell: HttpCellResult): Medians {
  const of = (pick: (run: HttpCellResult['runs'][number]) => number) => median(cell.runs.map(pick));
  return {
    reqPerSec: of((run) => run.reqPerSec),
    p50: of((run) => run.latency.p50),
    p99: of((run) => run.latency.p99),
    serverCores: of((run) => run.serverCores),
    machineBusy: of((run) => run.machineBusy),
  };
}

export function httpTable(result: HttpResult): string {
  const rows: string[][] = [];
  for (const { name, version } of result.frameworks) {
    const concurrencies = [
      ...new Set(result.cells.filter((c) => c.framework === name).map((c) => c.concurrency)),
    ];
    for (const concurrency of concurrencies) {
      const of = (route: HttpRoute) => {
        const cell = result.cells.find(
          (c) => c.framework === name && c.concurrency === concurrency && c.route === route,
        );
        if (!cell) throw new Error(`no HTTP cell ${name} ${route} c=${concurrency}`);
        return medians(cell);
      };
      const [bare, first, replay] = [of('bare'), of('first'), of('replay')];
      const three = (pick: (m: Medians) => string) => [bare, first, replay].map(pick).join(' / ');
      rows.push([
        `${name} ${version}`,
        String(concurrency),
        int(bare.reqPerSec),
        int(first.reqPerSec),
        int(replay.reqPerSec),
        times(first.reqPerSec / bare.reqPerSec),
        times(replay.reqPerSec / bare.reqPerSec),
        three((m) => ms(m.p50)),
        three((m) => ms(m.p99)),
        three((m) => m.serverCores.toFixed(2)),
        three((m) => `${Math.round(m.machineBusy * 100)} %`),
      ]);
    }
  }
  const headers = ['framework', 'c', 'bare req/s', 'first req/s', 'replay req/s'];
  headers.push('first / bare', 'replay / bare', 'p50 ms (bare / first / replay)');
  headers.push('p99 ms (bare / first / replay)', 'server CPU, cores (bare / first / replay)');
  headers.push('machine CPU (bare / first / replay)');
  return markdownTable(headers, rows, 'lrrrrrrrrrr');
}

/** What was checked, and whether it held: ✓, or ✗ and what did not. */
export function httpCheckLine(result: HttpResult): string {
  const { responses, problems } = result.check;
  if (problems.length > 0) {
    return `HTTP check ✗: responses and rows written disagree: ${problems.join('; ')}`;
  }
  return (
    `HTTP check ✓: ${int(responses)} responses, all 2xx, no socket errors; every bare and ` +
    'first-execution 2xx wrote its row, replays wrote none.'
  );
}
