import { migrate } from '../../index.ts';
import { EXIT_FAILURE, EXIT_OK } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { raceAbort } from '../shared/race-abort.ts';

/**
 * `idempotency-ledger migrate`: creates or upgrades the ledger with {@link migrate}.
 *
 * @example
 * ```ts
 * const code = await migrateCommand.run(['--schema', 'app'], context);
 * ```
 */
export const migrateCommand = defineCommand({
  name: 'migrate',
  summary: 'create or upgrade the ledger (safe to run from several deploys at once)',
  usage: `Usage: idempotency-ledger migrate [--schema NAME] [--connect-timeout-ms N]

Creates the ledger's schema and tables, or applies the migrations a newer version of the
library ships. Concurrent runs wait for each other; each migration applies once.

${CONNECTION_FLAGS_USAGE}

SIGINT/SIGTERM stop it (exit code 1); a migration that had not committed is rolled back.
`,
  flags: CONNECTION_FLAGS,
  async run(flags, { env, stdout, stderr, signal }) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const connectionString = readDatabaseUrl(env);
    // migrate() cannot be cancelled: on a signal the command stops waiting for it, and the process
    // ends, closing its connection, so Postgres rolls back whatever it had not committed.
    const outcome = await raceAbort(
      migrate({ connectionString, connectTimeoutMs, ...(schema === undefined ? {} : { schema }) }),
      signal,
    );
    if (outcome.aborted) {
      stderr('idempotency-ledger migrate: stopped by a signal before it finished\n');
      return EXIT_FAILURE;
    }
    const { applied } = outcome.value;
    stdout(applied.length ? `applied ${applied.join(', ')}\n` : 'ledger is up to date\n');
    return EXIT_OK;
  },
});
