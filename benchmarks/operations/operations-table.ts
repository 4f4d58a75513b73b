// The operations section's tables: statements per path, throughput and latency as ratios to the
// bare transaction and to withIdempotency, what a step and a call add, and the finished check.
import { median } from '../measure.ts';
import { int, markdownTable, ms, times, waitsTable } from '../report.ts';
import type { OperationVariantId } from './operation-variants.ts';
import type { OperationCellResult, OperationsResult } from './run-operations.ts';

export const OPERATIONS_NOTES = [
  'Every variant writes the same business row (one charges INSERT … RETURNING id, a 210-byte',
  'response) once per call. "step(INSERT)" runs that INSERT in a recorded step and finish()',
  'then commits the same response with no business write of its own; "call" is a no-op async',
  'function standing in for the provider, so that only the library is measured. Replays cycle',
  'through 16 finished keys. A pg pool of 16; default lease (30 s), so no heartbeat fires.',
  'Ratios compare ops/s; compare ratios, not absolute figures, between machines. WAL counts',
  "this database's records only (pg_walinspect), unless the table says the server's.",
  '',
].join('\n');

const LABELS: Record<OperationVariantId, string> = {
  bare: 'bare transaction (BEGIN; INSERT; COMMIT)',
  'with-idempotency': 'withIdempotency, first execution',
  finish: 'operation: finish(INSERT)',
  'step-finish': 'operation: step(INSERT) + finish',
  'step-call-finish': 'operation: step(INSERT) + call(no-op) + finish',
  replay: 'operation: replay of a finished one',
  'with-idempotency-replay': 'withIdempotency, replay',
};

// Statements by the first words pg sends, named as the README names them.
const STATEMENT_NAMES: [string, string][] = [
  ['select * from "idempotency"."acquire_operation"(', 'acquire'],
  ['select step, result::text as', 'recorded steps'],
  ['with fence as (', 'record'],
  ['update "idempotency"."operations" set state', 'finish'],
  ['update "idempotency"."operations" set lease_expires_at', 'lease'],
  ['select fingerprint, response::text', 'lookup'],
  ['select claimed, fingerprint,', 'claim'],
  ['update "idempotency"."ledger" set', 'record response'],
  ['insert into "charges"', 'INSERT'],
  ['begin', 'BEGIN'],
  ['commit', 'COMMIT'],
];

const nameOf = (statement: string) =>
  STATEMENT_NAMES.find(([prefix]) => statement.startsWith(prefix))?.[1] ?? statement;

/** `acquire + (BEGIN, INSERT, record, COMMIT) + record + (BEGIN, finish, COMMIT)`. */
export function describePath(statements: string[]): string {
  const parts: string[] = [];
  let transaction: string[] | undefined;
  for (const name of statements.map(nameOf)) {
    if (name === 'BEGIN') transaction = [name];
    else if (transaction) {
      transaction.push(name);
      if (name === 'COMMIT') {
        parts.push(`(${transaction.join(', ')})`);
        transaction = undefined;
      }
    } else parts.push(name);
  }
  if (transaction) parts.push(`(${transaction.join(', ')}`);
  return parts.join(' + ');
}

export function pathsTable(result: OperationsResult): string {
  return markdownTable(
    ['variant', 'statements one call sends (a transaction in parentheses)', 'round trips', 'WAL B'],
    result.paths.map(({ variant, statements, walBytes }) => [
      LABELS[variant],
      describePath(statements),
      String(statements.length),
      walBytes === undefined ? '?' : int(walBytes),
    ]),
    'llrr',
  );
}

interface Medians {
  opsPerSec: number;
  p50: number;
  p99: number;
  pgRoundTrips: number;
  walBytesPerOp: number;
  nodeCores: number;
  machineBusy: number;
}

function medians(cell: OperationCellResult): Medians {
  const of = (pick: (run: OperationCellResult['runs'][number]) => number) =>
    median(cell.runs.map(pick));
  return {
    opsPerSec: of((run) => run.opsPerSec),
    p50: of((run) => run.latency.p50),
    p99: of((run) => run.latency.p99),
    pgRoundTrips: of((run) => run.pgRoundTripsPerOp),
    // This database's WAL where it was measured; the server's only when it never was.
    walBytesPerOp: median(
      (cell.runs.some((run) => run.walScope === 'database')
        ? cell.runs.filter((run) => run.walScope === 'database')
        : cell.runs
      ).map((run) => run.walBytesPerOp ?? Number.NaN),
    ),
    nodeCores: of((run) => run.cpu.nodeCores),
    machineBusy: of((run) => run.cpu.machineBusy),
  };
}

function finder(result: OperationsResult) {
  return (variant: OperationVariantId, c: number) => {
    const cell = result.cells.find((x) => x.variant === variant && x.concurrency === c);
    return cell && medians(cell);
  };
}

export function operationsTable(result: OperationsResult): string {
  const find = finder(result);
  const rows = [...result.cells]
    .sort((a, b) => a.concurrency - b.concurrency)
    .map((cell) => {
      const m = medians(cell);
      const bare = find('bare', cell.concurrency);
      const ledger = find('with-idempotency', cell.concurrency);
      return [
        LABELS[cell.variant],
        String(cell.concurrency),
        int(m.opsPerSec),
        ms(m.p50),
        ms(m.p99),
        bare ? times(m.opsPerSec / bare.opsPerSec) : '–',
        ledger ? times(m.opsPerSec / ledger.opsPerSec) : '–',
        String(Math.round(m.pgRoundTrips * 10) / 10),
        int(m.walBytesPerOp),
        m.nodeCores.toFixed(2),
        `${Math.round(m.machineBusy * 100)} %`,
      ];
    });
  const headers = ['variant', 'c', 'ops/s', 'p50 ms', 'p99 ms', 'ops/s vs bare'];
  const serverWal = result.cells.some((cell) =>
    cell.runs.every((run) => run.walScope === 'server'),
  );
  headers.push(
    'vs withIdempotency',
    'round trips/op',
    serverWal ? 'WAL B/op (server)' : 'WAL B/op',
  );
  headers.push('node CPU', 'machine CPU');
  return markdownTable(headers, rows, 'llrrrrrrrrr');
}

/** What one more piece costs: `with` against `without`, at each concurrency. */
export function addedCostLines(result: OperationsResult): string {
  const find = finder(result);
  const path = (variant: OperationVariantId) => result.paths.find((p) => p.variant === variant);
  const statements = (variant: OperationVariantId) =>
    path(variant)?.statements.length ?? Number.NaN;
  // The WAL of one call alone when pg_walinspect measured it: the cells' also carry checkpoints'
  // full-page images, which come and go with the server's other traffic.
  const wal = (variant: OperationVariantId, cell: Medians) =>
    path(variant)?.walBytes ?? cell.walBytesPerOp;
  const concurrencies = [...new Set(result.cells.map((cell) => cell.concurrency))].sort(
    (a, b) => a - b,
  );
  const line = (label: string, withIt: OperationVariantId, without: OperationVariantId) => {
    const [first] = concurrencies;
    const a1 = first === undefined ? undefined : find(withIt, first);
    const b1 = first === undefined ? undefined : find(without, first);
    const bare1 = first === undefined ? undefined : find('bare', first);
    if (!a1 || !b1 || !bare1) return `- ${label}: not measured`;
    const ratios = concurrencies
      .map((c) => {
        const a = find(withIt, c);
        const b = find(without, c);
        return a && b ? `${times(a.opsPerSec / b.opsPerSec)} at c=${c}` : '';
      })
      .filter(Boolean)
      .join(', ');
    const addedP50 = a1.p50 - b1.p50;
    const added = statements(withIt) - statements(without);
    return (
      `- ${label}: ${signed(added, String)} round trip${Math.abs(added) === 1 ? '' : 's'}, ` +
      `${signed(wal(withIt, a1) - wal(without, b1), int)} B of WAL; ops/s ${ratios}; ` +
      `p50 at c=${first} ${signed(addedP50, ms)} ms, ${times(addedP50 / bare1.p50)} the bare transaction's p50`
    );
  };
  return [
    line('A local step (step(INSERT) + finish against finish(INSERT))', 'step-finish', 'finish'),
    line(
      "An external call's record (+ call(no-op) against step + finish)",
      'step-call-finish',
      'step-finish',
    ),
    line('finish() alone against withIdempotency', 'finish', 'with-idempotency'),
  ].join('\n');
}

const signed = (value: number, format: (value: number) => string) =>
  value < 0 ? `-${format(-value)}` : `+${format(value)}`;

export function operationsWaitsTable(result: OperationsResult): string {
  return waitsTable(result.cells, LABELS);
}

export function operationsCheckLine(result: OperationsResult): string {
  const ok = result.checks.every((check) => check.executed === check.finished);
  const counts = result.checks
    .map((check) => `${check.variant} ${int(check.finished)}/${int(check.executed)}`)
    .join(', ');
  return `Finished operations in the database / executions counted: ${counts}: ${ok ? 'each once ✓' : 'MISMATCH ✗'}`;
}
