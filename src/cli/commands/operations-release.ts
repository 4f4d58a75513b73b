import { releaseOperation } from '../../operations/index.ts';
import { CliError, EXIT_NOT_FOUND, EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { KEY_FLAG_NOTE } from '../shared/key-flag-note.ts';
import { requiredText } from '../shared/required-text.ts';
import { withDatabase } from '../shared/with-database.ts';

const RELEASE_FLAGS = {
  ...CONNECTION_FLAGS,
  scope: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/**
 * `idempotency-ledger operations release`: {@link releaseOperation} for one operation in
 * progress. Exit code 3 when there is none with that scope and key (never named: the key is a
 * secret of the caller).
 *
 * @example
 * ```ts
 * const code = await operationsReleaseCommand.run(['--scope', 's', '--key', 'k'], context);
 * ```
 */
export const operationsReleaseCommand = defineCommand({
  name: 'operations release',
  summary: 'take the lease of an operation in progress away, so that it resumes at once',
  usage: `Usage: idempotency-ledger operations release --scope S --key K [--json] [--schema NAME]
                                           [--connect-timeout-ms N]

Takes the lease away from the attempt holding an operation in progress and raises its fencing
token: that attempt, if it still runs, can commit nothing more, and the next retry or completer
pass resumes the operation from its last recorded step. A finished operation is left alone.

  --scope S                the operation's scope
  --key K                  the operation's idempotency key
  --json                   print {"released": true} or {"released": false}
${CONNECTION_FLAGS_USAGE}

${KEY_FLAG_NOTE}

Exit codes: 0 released; 3 no operation in progress with that scope and key (none, or
finished); 1 failed; 2 wrong arguments. SIGINT/SIGTERM while it connects stop it (exit code 0).
`,
  flags: RELEASE_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const scope = requiredText('scope', flags.scope);
    const key = requiredText('key', flags.key);
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      releaseOperation(db, { scope, key, ...(schema === undefined ? {} : { schema }) }),
    );
    if (outcome.aborted) return EXIT_OK;
    const released = outcome.value;
    if (flags.json) context.stdout(`${JSON.stringify({ released })}\n`);
    if (!released) {
      throw new CliError(
        `no operation in progress in scope ${JSON.stringify(scope)} with that key`,
        { exitCode: EXIT_NOT_FOUND },
      );
    }
    if (!flags.json) {
      context.stdout(
        'released: its lease is free and its fencing token raised; the next retry or ' +
          'completer pass resumes it\n',
      );
    }
    return EXIT_OK;
  },
});
