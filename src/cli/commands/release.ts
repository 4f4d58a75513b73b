import { type ReleaseResult, releaseKey } from '../../admin/index.ts';
import {
  CliError,
  EXIT_FAILURE,
  EXIT_NOT_FOUND,
  EXIT_OK,
  EXIT_REFUSED,
} from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { defineCommand } from '../shared/define-command.ts';
import { formatDurationMs } from '../shared/format-table.ts';
import { KEY_FLAG_NOTE } from '../shared/key-flag-note.ts';
import { requiredText } from '../shared/required-text.ts';
import { withDatabase } from '../shared/with-database.ts';

const RELEASE_FLAGS = {
  ...CONNECTION_FLAGS,
  scope: { type: 'string' },
  key: { type: 'string' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/**
 * `idempotency-ledger release`: {@link releaseKey} for one scope and key. Exit code 3 when there
 * is nothing to release, 4 when it refused (an attempt holds the operation's lease, without
 * `--force`; or a call in flight holds the row). The key is never named in a message.
 *
 * @example
 * ```ts
 * const code = await releaseCommand.run(['--scope', 's', '--key', 'k', '--json'], context);
 * ```
 */
export const releaseCommand = defineCommand({
  name: 'release',
  summary: "release one key: delete its entry, take its operation's lease away",
  usage: `Usage: idempotency-ledger release --scope S --key K [--force] [--json] [--schema NAME]
                                  [--connect-timeout-ms N]

Releases one key, in one transaction that touches nothing else. Its ledger entry is deleted: a
retry of the original request then executes its business write again. Its operation, if in
progress, is released: its lease taken away and its fencing token raised, it stays in progress
with its recorded steps, and the next retry or completer pass resumes it from its last step.
It is resumed rather than deleted because the steps it recorded stand for effects made outside
the database (a charge) that must not be made again, and because its row keeps its fencing token
growing: a new row would start again at token 1, which an attempt still running may hold. A
finished operation is left alone (it replays until it expires). An operation an attempt holds
with a live lease is refused unless --force: then it is released all the same, and the running
attempt can commit nothing more (what it did outside the database since its last step is not
undone).

  --scope S                the key's scope
  --key K                  the idempotency key
  --force                  release an operation even while an attempt holds its lease
  --json                   print the outcome: {"outcome": "released", "entryDeleted": true,
                           "entryCreatedAt": "...", "operationReleased": null},
                           "nothing_to_release" or "refused"
${CONNECTION_FLAGS_USAGE}

${KEY_FLAG_NOTE}

It never waits for a call in flight: a row one holds right now (an expired entry being taken
over, a step being recorded) is refused at once. A first claim of the key that has not committed
yet is not visible: "nothing to release", and that call's entry is committed afterwards. The
deleted entry's creation time is printed: compare it with what inspect showed.

Exit codes: 0 released; 3 nothing to release (no entry, no operation in progress); 4 refused,
nothing changed (a live lease without --force, or a call in flight holds the row); 1 failed;
2 wrong arguments. SIGINT/SIGTERM while it connects stop it, releasing nothing (exit code 1).
`,
  flags: RELEASE_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const scope = requiredText('scope', flags.scope);
    const key = requiredText('key', flags.key);
    const connectionString = readDatabaseUrl(context.env);
    const outcome = await withDatabase({ connectionString, connectTimeoutMs }, context, (db) =>
      releaseKey(db, {
        scope,
        key,
        force: flags.force === true,
        ...(schema === undefined ? {} : { schema }),
      }),
    );
    if (outcome.aborted) {
      // Exit code 1, as migrate: a script must not take a stop for a release.
      context.stderr(
        'idempotency-ledger release: stopped by a signal before it connected: nothing was released\n',
      );
      return EXIT_FAILURE;
    }
    const result = outcome.value;
    if (flags.json) context.stdout(`${JSON.stringify(forJson(result))}\n`);
    if (result.outcome === 'nothing_to_release') {
      throw new CliError(`nothing to release in scope ${JSON.stringify(scope)} with that key`, {
        exitCode: EXIT_NOT_FOUND,
      });
    }
    if (result.outcome === 'refused') {
      throw new CliError(
        result.reason === 'live_lease'
          ? `refused: an attempt holds the operation's lease for ${formatDurationMs(result.leaseRemainingMs)} more; --force releases it all the same`
          : 'refused: a call in flight holds the row right now; inspect the key again, then try again',
        { exitCode: EXIT_REFUSED },
      );
    }
    if (!flags.json) context.stdout(describe(result));
    return EXIT_OK;
  },
});

function forJson(result: ReleaseResult): ReleaseResult {
  return result.outcome === 'refused' && result.reason === 'live_lease'
    ? { ...result, leaseRemainingMs: Math.floor(result.leaseRemainingMs) }
    : result;
}

function describe(result: Extract<ReleaseResult, { outcome: 'released' }>): string {
  const done: string[] = [];
  if (result.entryCreatedAt !== null) {
    done.push(
      `deleted its ledger entry (created ${result.entryCreatedAt.toISOString()}): the next request with the key executes afresh`,
    );
  }
  const operation = result.operationReleased;
  if (operation) {
    const from = operation.leaseWasLive
      ? ' from the attempt holding it, which can commit nothing more'
      : '';
    done.push(
      `took its operation's lease away${from}: the next retry or completer pass resumes it from its last recorded step`,
    );
  }
  return `released: ${done.join('; ')}\n`;
}
