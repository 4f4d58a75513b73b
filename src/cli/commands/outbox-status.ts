import { type OutboxStreamStatus, outboxStatus } from '../../outbox/index.ts';
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

const STATUS_FLAGS = {
  ...CONNECTION_FLAGS,
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const DEFAULT_LIMIT = 100;

/**
 * `idempotency-ledger outbox status`: the streams with messages waiting, parked ones first, as
 * {@link outboxStatus} reports them, as a table or (`--json`) one JSON document.
 *
 * @example
 * ```ts
 * const code = await outboxStatusCommand.run(['--json'], context);
 * ```
 */
export const outboxStatusCommand = defineCommand({
  name: 'outbox status',
  summary: 'the streams with messages waiting: how many, how old, failing or parked',
  usage: `Usage: idempotency-ledger outbox status [--limit N] [--json] [--schema NAME]
                                     [--connect-timeout-ms N]

Lists the streams of the outbox that have messages waiting, parked ones first, then the oldest:
messages pending, age of the oldest, state (pending; failing: its first message failed and is
retried after a backoff; parked: it failed maxAttempts times and blocks its stream until
released), failed attempts of its first message, the relay that holds it, the last error.

  --limit N                at most N streams (default ${DEFAULT_LIMIT})
  --json                   one JSON document: {"streams": [...]}
${CONNECTION_FLAGS_USAGE}
`,
  flags: STATUS_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const limit = integerFlag('limit', flags.limit, { min: 1, max: 100_000 }) ?? DEFAULT_LIMIT;
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      outboxStatus(db, { limit, ...(schema === undefined ? {} : { schema }) }),
    );
    if (outcome.aborted) return EXIT_OK;
    context.stdout(flags.json ? asJson(outcome.value) : asTable(outcome.value));
    return EXIT_OK;
  },
});

function asJson(streams: OutboxStreamStatus[]): string {
  const shown = streams.map((stream) => ({
    ...stream,
    oldestAgeMs: Math.floor(stream.oldestAgeMs),
  }));
  return `${JSON.stringify({ streams: shown }, null, 2)}\n`;
}

function asTable(streams: OutboxStreamStatus[]): string {
  if (streams.length === 0) return 'no messages waiting\n';
  const header = ['STREAM', 'PENDING', 'OLDEST', 'STATE', 'ATTEMPTS', 'RELAY', 'LAST ERROR'];
  const rows = streams.map((stream) => [
    tableCell(stream.stream),
    String(stream.pending),
    formatDurationMs(stream.oldestAgeMs),
    stream.state,
    String(stream.headAttempts),
    stream.relay === null ? '-' : tableCell(stream.relay),
    stream.lastError === null ? '-' : tableCell(stream.lastError),
  ]);
  return formatTable([header, ...rows]);
}
