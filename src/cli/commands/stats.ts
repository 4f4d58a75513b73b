import {
  type LedgerStats,
  ledgerStats,
  type ScopeStats,
  type StatsStage,
} from '../../admin/index.ts';
import { EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { formatBytes } from '../shared/format-bytes.ts';
import { formatCount } from '../shared/format-count.ts';
import { formatDurationMs, formatTable, tableCell } from '../shared/format-table.ts';
import { integerFlag } from '../shared/integer-flag.ts';
import { startProgress } from '../shared/progress.ts';
import { withDatabase } from '../shared/with-database.ts';

const STATS_FLAGS = {
  ...CONNECTION_FLAGS,
  top: { type: 'string' },
  estimate: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

const DEFAULT_TOP = 10;

const STAGES: Record<StatsStage, string> = {
  sizes: 'measuring the tables',
  entries: 'counting entries',
  operations: 'counting operations',
};

/**
 * `idempotency-ledger stats`: {@link ledgerStats}, as a summary and two tables of scopes, or
 * (`--json`) one JSON document. On a terminal, standard error shows which stage it is in.
 *
 * @example
 * ```ts
 * const code = await statsCommand.run(['--top', '5', '--json'], context);
 * ```
 */
export const statsCommand = defineCommand({
  name: 'stats',
  summary: 'entries live and expired, bytes on disk, top scopes, cleanup backlog, operations',
  usage: `Usage: idempotency-ledger stats [--top N] [--estimate] [--json] [--schema NAME]
                                [--connect-timeout-ms N]

Measures the ledger: live and expired entries (the expired ones are the cleanup backlog), bytes
on disk (tables with their indexes), the scopes with the most entries and the largest responses,
the oldest entry, and operations in progress with the age of the oldest. One read-only scan of
the ledger (0.4 s per million entries); --estimate reads no ledger row instead.

  --top N                  scopes in each top list (default ${DEFAULT_TOP}, 0 for none)
  --estimate               total from the planner's statistics (as of the last VACUUM or ANALYZE);
                           the expired count stays exact; no scope lists, no oldest entry
  --json                   one JSON document, as ledgerStats() returns it
${CONNECTION_FLAGS_USAGE}

On a terminal, standard error shows the stage it is in. SIGINT/SIGTERM while it connects stop it
(exit code 0).
`,
  flags: STATS_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const top = integerFlag('top', flags.top, { min: 0, max: 1000 }) ?? DEFAULT_TOP;
    const connectionString = readDatabaseUrl(context.env);
    const progress = startProgress(context, 'stats');
    try {
      const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
        ledgerStats(db, {
          top,
          estimate: flags.estimate === true,
          onProgress: (stage) => progress.stage(STAGES[stage]),
          ...(schema === undefined ? {} : { schema }),
        }),
      );
      // Cleared before the result, which may go to the same terminal.
      progress.done();
      if (outcome.aborted) return EXIT_OK;
      context.stdout(flags.json ? asJson(outcome.value) : asSummary(outcome.value));
      return EXIT_OK;
    } finally {
      progress.done();
    }
  },
});

function asJson(stats: LedgerStats): string {
  const { oldestEntry, operations } = stats;
  const shown = {
    ...stats,
    oldestEntry: oldestEntry && { ...oldestEntry, ageMs: Math.floor(oldestEntry.ageMs) },
    operations: {
      ...operations,
      oldestInProgressAgeMs:
        operations.oldestInProgressAgeMs === null
          ? null
          : Math.floor(operations.oldestInProgressAgeMs),
    },
  };
  return `${JSON.stringify(shown, null, 2)}\n`;
}

function asSummary(stats: LedgerStats): string {
  const { entries, bytes, oldestEntry, operations } = stats;
  const about = stats.exact ? '' : '~';
  const oldest = operations.oldestInProgressAgeMs;
  const summary = formatTable([
    [
      'entries',
      `${about}${formatCount(entries.total)} (live ${about}${formatCount(entries.live)}, expired ${formatCount(entries.expired)})${stats.exact ? '' : ', estimated'}`,
    ],
    ['cleanup backlog', `${formatCount(entries.expired + operations.expired)} expired rows`],
    [
      'on disk',
      `ledger ${formatBytes(bytes.ledger)} (indexes ${formatBytes(bytes.ledgerIndexes)}), operations ${formatBytes(bytes.operations)}`,
    ],
    [
      'oldest entry',
      oldestEntry
        ? `${formatDurationMs(oldestEntry.ageMs)} old (${oldestEntry.createdAt.toISOString()})`
        : stats.exact
          ? 'none'
          : 'not measured with --estimate',
    ],
    [
      'operations',
      `${formatCount(operations.inProgress)} in progress${oldest === null ? '' : `, the oldest ${formatDurationMs(oldest)} old`}; ${formatCount(operations.expired)} expired`,
    ],
  ]);
  return [
    summary,
    scopeTable('TOP SCOPES BY ENTRIES', stats.topScopesByEntries),
    scopeTable('TOP SCOPES BY RESPONSE BYTES', stats.topScopesByResponseBytes),
  ]
    .filter((part) => part !== '')
    .join('\n');
}

function scopeTable(title: string, scopes: ScopeStats[] | null): string {
  if (scopes === null || scopes.length === 0) return '';
  return formatTable([
    [title, 'ENTRIES', 'RESPONSES'],
    ...scopes.map((scope) => [
      tableCell(scope.scope),
      formatCount(scope.entries),
      formatBytes(scope.responseBytes),
    ]),
  ]);
}
