import { releaseParkedMessage } from '../../outbox/index.ts';
import { CliError, EXIT_NOT_FOUND, EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { requiredText } from '../shared/required-text.ts';
import { withDatabase } from '../shared/with-database.ts';

const RELEASE_FLAGS = { ...CONNECTION_FLAGS, stream: { type: 'string' } } as const;

/**
 * `idempotency-ledger outbox release --stream S`: unblocks a stream whose first message was
 * parked ({@link releaseParkedMessage}): the message is retried at once, its attempts counted
 * from zero.
 *
 * @example
 * ```ts
 * const code = await outboxReleaseCommand.run(['--stream', 'order-42'], context);
 * ```
 */
export const outboxReleaseCommand = defineCommand({
  name: 'outbox release',
  summary: 'retry the parked message that blocks a stream',
  usage: `Usage: idempotency-ledger outbox release --stream S [--schema NAME] [--connect-timeout-ms N]

Unblocks a stream whose first message was parked after maxAttempts failed publishes: the next
relay pass publishes it again, its attempts counted from zero. Fix what made it fail first.

  --stream S               the stream, as outbox status shows it
${CONNECTION_FLAGS_USAGE}

Exit codes: 0 released; 3 no parked message on that stream.
`,
  flags: RELEASE_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const stream = requiredText('stream', flags.stream);
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      releaseParkedMessage(db, { stream, ...(schema === undefined ? {} : { schema }) }),
    );
    if (outcome.aborted) return EXIT_OK;
    if (!outcome.value) {
      throw new CliError('no parked message on that stream', { exitCode: EXIT_NOT_FOUND });
    }
    context.stdout('released: the next relay pass publishes it\n');
    return EXIT_OK;
  },
});
