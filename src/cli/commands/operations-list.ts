import { listOperationsInProgress, type OperationSummary } from '../../operations/index.ts';
import { EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { formatDurationMs, formatTable, tableCell } from '../shared/format-table.ts';
import { integerFlag } from '../shared/integer-flag.ts';
import { withDatabase } from '../shared/with-database.ts';

const LIST_FLAGS = {
  ...CONNECTION_FLAGS,
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 100_000;

/**
 * `idempotency-ledger operations list`: the operations in progress, oldest first, as
 * {@link listOperationsInProgress} returns them, as a table or (`--json`) one JSON document.
 * Keys are printed: an operator asked for them. Errors never carry them.
 *
 * @example
 * ```ts
 * const code = await operationsListCommand.run(['--limit', '20', '--json'], context);
 * ```
 */
export const operationsListCommand = defineCommand({
  name: 'operations list',
  summary: 'the operations in progress, oldest first, with their lease and steps',
  usage: `Usage: idempotency-ledger operations list [--limit N] [--json] [--schema NAME]
                                        [--connect-timeout-ms N]

Lists the operations in progress, oldest first: scope, key, name, attempts, fencing token,
lease left ("free" when no attempt holds it: the next retry or completer pass takes it),
steps recorded, and age. An operation whose attempts keep growing fails on every resume.
The output holds idempotency keys: keep it out of logs.

  --limit N                at most N operations (default ${DEFAULT_LIMIT})
  --json                   one JSON document: {"operations": [...], "more": false}
${CONNECTION_FLAGS_USAGE}

SIGINT/SIGTERM while it connects stop it (exit code 0).
`,
  flags: LIST_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const limit = integerFlag('limit', flags.limit, { min: 1, max: MAX_LIMIT }) ?? DEFAULT_LIMIT;
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      // One more than shown: whether there are more is worth a line.
      listOperationsInProgress(db, {
        limit: limit + 1,
        ...(schema === undefined ? {} : { schema }),
      }),
    );
    if (outcome.aborted) return EXIT_OK;
    const operations = outcome.value.slice(0, limit);
    const more = outcome.value.length > limit;
    context.stdout(flags.json ? asJson(operations, more) : asTable(operations, more));
    return EXIT_OK;
  },
});

function asJson(operations: OperationSummary[], more: boolean): string {
  const shown = operations.map((operation) => ({
    ...operation,
    leaseRemainingMs:
      operation.leaseRemainingMs === null ? null : Math.floor(operation.leaseRemainingMs),
    ageMs: Math.floor(operation.ageMs),
  }));
  return `${JSON.stringify({ operations: shown, more }, null, 2)}\n`;
}

function asTable(operations: OperationSummary[], more: boolean): string {
  if (operations.length === 0) return 'no operations in progress\n';
  const header = ['SCOPE', 'KEY', 'NAME', 'ATTEMPTS', 'TOKEN', 'LEASE LEFT', 'STEPS', 'AGE'];
  const rows = operations.map((operation) => [
    tableCell(operation.scope),
    tableCell(operation.key),
    tableCell(operation.name),
    String(operation.attempts),
    operation.fencingToken,
    // A lease that ran out is as free as one released: the next attempt takes it.
    operation.leaseRemainingMs ? formatDurationMs(operation.leaseRemainingMs) : 'free',
    operation.steps.length === 0 ? '-' : operation.steps.map(tableCell).join(','),
    formatDurationMs(operation.ageMs),
  ]);
  const table = formatTable([header, ...rows]);
  return more ? `${table}(the oldest ${operations.length}; --limit shows more)\n` : table;
}
