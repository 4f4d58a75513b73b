import { inspectKey, type KeyInspection } from '../../admin/index.ts';
import { EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { formatBytes } from '../shared/format-bytes.ts';
import { formatDurationMs, formatTable, tableCell } from '../shared/format-table.ts';
import { KEY_FLAG_NOTE } from '../shared/key-flag-note.ts';
import { requiredText } from '../shared/required-text.ts';
import { withDatabase } from '../shared/with-database.ts';

const INSPECT_FLAGS = {
  ...CONNECTION_FLAGS,
  scope: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/**
 * `idempotency-ledger inspect`: {@link inspectKey} for one scope and key, as a list of fields or
 * (`--json`) one JSON document. An absent key is an answer (`entry: absent`), not an error.
 *
 * @example
 * ```ts
 * const code = await inspectCommand.run(['--scope', 's', '--key', 'k', '--json'], context);
 * ```
 */
export const inspectCommand = defineCommand({
  name: 'inspect',
  summary: "one key's ledger entry and operation: state, expiry, fingerprint, sizes, steps",
  usage: `Usage: idempotency-ledger inspect --scope S --key K [--json] [--schema NAME]
                                  [--connect-timeout-ms N]

Shows what the ledger holds for one scope and key: the entry's state (live, expired or absent),
when it was created and expires, the time left by the database clock, the request's fingerprint
and the response's size; and the key's operation, if any: its state, attempts, fencing token,
lease left and the steps it recorded. Never prints a response, request or step result.

  --scope S                the key's scope
  --key K                  the idempotency key
  --json                   one JSON document: {"scope", "key", "entry", "operation"}
${CONNECTION_FLAGS_USAGE}

${KEY_FLAG_NOTE}

SIGINT/SIGTERM while it connects stop it (exit code 0).
`,
  flags: INSPECT_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const scope = requiredText('scope', flags.scope);
    const key = requiredText('key', flags.key);
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      inspectKey(db, { scope, key, ...(schema === undefined ? {} : { schema }) }),
    );
    if (outcome.aborted) return EXIT_OK;
    context.stdout(flags.json ? asJson(outcome.value) : asFields(outcome.value));
    return EXIT_OK;
  },
});

function asJson(found: KeyInspection): string {
  const { entry, operation } = found;
  const shown = {
    ...found,
    entry:
      entry.state === 'absent' ? entry : { ...entry, expiresInMs: Math.floor(entry.expiresInMs) },
    operation: operation && {
      ...operation,
      leaseRemainingMs:
        operation.leaseRemainingMs === null ? null : Math.floor(operation.leaseRemainingMs),
    },
  };
  return `${JSON.stringify(shown, null, 2)}\n`;
}

function asFields({ scope, key, entry, operation }: KeyInspection): string {
  const rows: string[][] = [
    ['scope', tableCell(scope)],
    ['key', tableCell(key)],
  ];
  if (entry.state === 'absent') {
    rows.push(['entry', 'absent']);
  } else {
    const left = entry.expiresInMs;
    rows.push(
      [
        'entry',
        entry.state === 'live'
          ? `live, expires in ${formatDurationMs(left)}`
          : `expired ${formatDurationMs(-left)} ago`,
      ],
      ['created', entry.createdAt.toISOString()],
      ['expires', entry.expiresAt.toISOString()],
      ['fingerprint', entry.fingerprint ?? 'none (no request)'],
      ['response', entry.responseBytes === null ? 'none' : formatBytes(entry.responseBytes)],
    );
  }
  if (operation === null) {
    rows.push(['operation', 'none']);
    return formatTable(rows);
  }
  const lease = operation.leaseRemainingMs;
  rows.push(
    ['operation', `${tableCell(operation.name)}, ${operation.state.replace('_', ' ')}`],
    ['attempts', String(operation.attempts)],
    ['fencing token', operation.fencingToken],
    ['lease left', lease ? formatDurationMs(lease) : 'free'],
    ['created', operation.createdAt.toISOString()],
    ['updated', operation.updatedAt.toISOString()],
  );
  if (operation.expiresAt) rows.push(['expires', operation.expiresAt.toISOString()]);
  if (operation.responseBytes !== null)
    rows.push(['response', formatBytes(operation.responseBytes)]);
  rows.push(['steps', operation.steps.length === 0 ? 'none' : String(operation.steps.length)]);
  const fields = formatTable(rows);
  if (operation.steps.length === 0) return fields;
  const steps = formatTable([
    ['  STEP', 'RESULT', 'TOKEN', 'RECORDED AT'],
    ...operation.steps.map((step) => [
      `  ${tableCell(step.name)}`,
      step.resultBytes === null ? 'none' : formatBytes(step.resultBytes),
      step.fencingToken,
      step.recordedAt.toISOString(),
    ]),
  ]);
  return `${fields}${steps}`;
}
