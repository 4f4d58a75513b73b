import {
  type EntrySummary,
  listEntries,
  listStuckOperations,
  type StuckOperation,
} from '../../admin/index.ts';
import { EXIT_OK, usageError } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { formatBytes } from '../shared/format-bytes.ts';
import { formatDurationMs, formatTable, tableCell } from '../shared/format-table.ts';
import { integerFlag } from '../shared/integer-flag.ts';
import { withDatabase } from '../shared/with-database.ts';

const LIST_FLAGS = {
  ...CONNECTION_FLAGS,
  'scope-prefix': { type: 'string' },
  live: { type: 'boolean' },
  expired: { type: 'boolean' },
  stuck: { type: 'boolean' },
  'min-attempts': { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 100_000;
const DEFAULT_MIN_ATTEMPTS = 5;

/**
 * `idempotency-ledger list`: ledger entries ({@link listEntries}), or with `--stuck` the
 * operations in progress that need a look ({@link listStuckOperations}), as a table or
 * (`--json`) one JSON document. Keys are printed: an operator asked for them.
 *
 * @example
 * ```ts
 * const code = await listCommand.run(['--scope-prefix', 'merchant:42:', '--expired'], context);
 * ```
 */
export const listCommand = defineCommand({
  name: 'list',
  summary: 'entries by scope prefix and state, or --stuck operations',
  usage: `Usage: idempotency-ledger list [--scope-prefix P] [--live | --expired] [--limit N] [--json]
       idempotency-ledger list --stuck [--scope-prefix P] [--min-attempts N] [--limit N] [--json]
                               [--schema NAME] [--connect-timeout-ms N]

Lists ledger entries in key order (scope, then key, byte by byte): state, time to expiry,
creation, response size. --expired without --scope-prefix lists cleanup's backlog oldest expiry
first instead, read through the expiry index (it reads only expired entries). With --stuck, lists the operations in progress, oldest first, that no
attempt holds (their lease ran out or was released: a completer should resume them) or whose
attempts reached --min-attempts (they fail on every resume). The output holds idempotency keys:
keep it out of logs.

  --scope-prefix P         only scopes that start with P, taken literally (_ and % included)
  --live, --expired        only entries that replay, or only expired ones (cleanup's backlog)
  --stuck                  operations in progress that need a look, instead of entries
  --min-attempts N         with --stuck: attempts that count as many (default ${DEFAULT_MIN_ATTEMPTS})
  --limit N                at most N rows (default ${DEFAULT_LIMIT}, at most ${MAX_LIMIT})
  --json                   one JSON document: {"entries": [...], "more": false}, or
                           {"operations": [...], "more": false} with --stuck
${CONNECTION_FLAGS_USAGE}

SIGINT/SIGTERM while it connects stop it (exit code 0).
`,
  flags: LIST_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const limit = integerFlag('limit', flags.limit, { min: 1, max: MAX_LIMIT }) ?? DEFAULT_LIMIT;
    const minAttempts = integerFlag('min-attempts', flags['min-attempts'], {
      min: 1,
      max: 2_147_483_647,
    });
    if (flags.live && flags.expired) throw usageError('--live and --expired exclude each other');
    if (flags.stuck && (flags.live || flags.expired)) {
      throw usageError('--stuck lists operations: --live and --expired apply to entries');
    }
    if (minAttempts !== undefined && !flags.stuck) {
      throw usageError('--min-attempts applies only with --stuck');
    }
    const common = {
      ...(flags['scope-prefix'] === undefined ? {} : { scopePrefix: flags['scope-prefix'] }),
      ...(schema === undefined ? {} : { schema }),
    };
    const connectionString = readDatabaseUrl(context.env);
    const target = { connectionString, connectTimeoutMs };
    if (flags.stuck) {
      const outcome = await withDatabase(target, context, (db) =>
        // One more than shown: whether there are more is worth a line.
        listStuckOperations(db, {
          ...common,
          limit: limit + 1,
          minAttempts: minAttempts ?? DEFAULT_MIN_ATTEMPTS,
        }),
      );
      if (outcome.aborted) return EXIT_OK;
      const shown = outcome.value.slice(0, limit);
      const more = outcome.value.length > limit;
      context.stdout(flags.json ? stuckJson(shown, more) : stuckTable(shown, more));
      return EXIT_OK;
    }
    const state = flags.live ? 'live' : flags.expired ? 'expired' : 'all';
    const outcome = await withDatabase(target, context, (db) =>
      listEntries(db, { ...common, limit: limit + 1, state }),
    );
    if (outcome.aborted) return EXIT_OK;
    const shown = outcome.value.slice(0, limit);
    const more = outcome.value.length > limit;
    context.stdout(flags.json ? entriesJson(shown, more) : entriesTable(shown, more));
    return EXIT_OK;
  },
});

function moreLine(shown: number, more: boolean): string {
  return more ? `(the first ${shown}; --limit shows more)\n` : '';
}

function entriesJson(entries: EntrySummary[], more: boolean): string {
  const shown = entries.map((entry) => ({ ...entry, expiresInMs: Math.floor(entry.expiresInMs) }));
  return `${JSON.stringify({ entries: shown, more }, null, 2)}\n`;
}

function entriesTable(entries: EntrySummary[], more: boolean): string {
  if (entries.length === 0) return 'no entries\n';
  const rows = entries.map((entry) => [
    tableCell(entry.scope),
    tableCell(entry.key),
    entry.state,
    entry.expiresInMs > 0
      ? formatDurationMs(entry.expiresInMs)
      : `-${formatDurationMs(-entry.expiresInMs)}`,
    entry.createdAt.toISOString(),
    entry.responseBytes === null ? 'none' : formatBytes(entry.responseBytes),
  ]);
  const header = ['SCOPE', 'KEY', 'STATE', 'EXPIRES IN', 'CREATED', 'RESPONSE'];
  return `${formatTable([header, ...rows])}${moreLine(entries.length, more)}`;
}

function stuckJson(operations: StuckOperation[], more: boolean): string {
  const shown = operations.map((operation) => ({
    ...operation,
    leaseRemainingMs:
      operation.leaseRemainingMs === null ? null : Math.floor(operation.leaseRemainingMs),
    ageMs: Math.floor(operation.ageMs),
  }));
  return `${JSON.stringify({ operations: shown, more }, null, 2)}\n`;
}

function stuckTable(operations: StuckOperation[], more: boolean): string {
  if (operations.length === 0) return 'no stuck operations\n';
  const rows = operations.map((operation) => [
    tableCell(operation.scope),
    tableCell(operation.key),
    tableCell(operation.name),
    String(operation.attempts),
    operation.fencingToken,
    operation.leaseRemainingMs ? formatDurationMs(operation.leaseRemainingMs) : 'free',
    operation.reasons.join(','),
    formatDurationMs(operation.ageMs),
  ]);
  const header = ['SCOPE', 'KEY', 'NAME', 'ATTEMPTS', 'TOKEN', 'LEASE LEFT', 'WHY', 'AGE'];
  return `${formatTable([header, ...rows])}${moreLine(operations.length, more)}`;
}
