import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import {
  DEFAULT_LEASE_MS,
  type ResumeOptions,
  type ResumeResult,
  resumeAbandonedOperations,
} from '../../operations/index.ts';
import { EXIT_FAILURE, EXIT_OK, usageError } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { type CommandContext, defineCommand } from '../shared/define-command.ts';
import { describeError } from '../shared/describe-error.ts';
import { importOperations } from '../shared/import-operations.ts';
import { integerFlag, MAX_TIMER_MS } from '../shared/integer-flag.ts';
import { withDatabase } from '../shared/with-database.ts';

const RESUME_FLAGS = {
  ...CONNECTION_FLAGS,
  module: { type: 'string' },
  export: { type: 'string' },
  'batch-size': { type: 'string' },
  'lease-ms': { type: 'string' },
  loop: { type: 'boolean' },
  'interval-ms': { type: 'string' },
} as const;

const DEFAULT_BATCH_SIZE = 10;
const MAX_BATCH_SIZE = 10_000;
const DEFAULT_INTERVAL_MS = 10_000;
/** runOperation refuses shorter leases. */
const MIN_LEASE_MS = 100;

/**
 * `idempotency-ledger operations resume`: the completer, {@link resumeAbandonedOperations}, with
 * the operations a module of the application exports, once or every `--interval-ms` with
 * `--loop`. The command opens the connection (`DATABASE_URL`); the module only defines the
 * operations.
 *
 * @example
 * ```ts
 * const code = await operationsResumeCommand.run(['--module', './dist/operations.js'], context);
 * ```
 */
export const operationsResumeCommand = defineCommand({
  name: 'operations resume',
  summary: 'the completer: resume abandoned operations, once or every --interval-ms with --loop',
  usage: `Usage: idempotency-ledger operations resume --module PATH [--export NAME] [--batch-size N]
                                          [--lease-ms N] [--loop [--interval-ms N]]
                                          [--schema NAME] [--connect-timeout-ms N]

Resumes operations in progress that no attempt holds (their process died, or a call failed and
released the lease) from their last recorded step, with the request stored at their start, then
prints what the pass did: found, finished, pending (a call failed again), skipped (another
attempt took it first), failed (an error, printed). With --loop, a pass every --interval-ms.

The code of the operations comes from --module: a file (relative to the current directory) that
exports operations made by defineOperation, as ESM or CommonJS, or TypeScript where Node runs
it. Importing it runs it: let it define operations, not start work. The command connects to
DATABASE_URL itself and passes that connection to the operations. Only operations of the names
the module defines are resumed; others are left to a completer that has their code. Operations
stored with encryption need it: the module exports it too (what responseEncryption() built).

  --module PATH            the module that exports the operations
  --export NAME            only the operation exported as NAME (default: all it exports)
  --batch-size N           operations resumed per pass, one at a time (default ${DEFAULT_BATCH_SIZE})
  --lease-ms N             lease of each attempt (default ${DEFAULT_LEASE_MS}, at least ${MIN_LEASE_MS})
  --loop                   keep running until SIGINT/SIGTERM
  --interval-ms N          time between two passes with --loop (default ${DEFAULT_INTERVAL_MS})
${CONNECTION_FLAGS_USAGE}

Exit codes: 0 done; 1 an operation failed (once), or the database failed; 2 wrong arguments,
DATABASE_URL, or a module that cannot be imported or exports no operation. SIGINT/SIGTERM stop
it after the running operation, or at once while it connects or waits (exit code 0).
`,
  flags: RESUME_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const batchSize = integerFlag('batch-size', flags['batch-size'], {
      min: 1,
      max: MAX_BATCH_SIZE,
    });
    const leaseMs = integerFlag('lease-ms', flags['lease-ms'], {
      min: MIN_LEASE_MS,
      max: MAX_TIMER_MS,
    });
    const intervalMs = integerFlag('interval-ms', flags['interval-ms'], {
      min: 1,
      max: MAX_TIMER_MS,
    });
    if (intervalMs !== undefined && !flags.loop) {
      throw usageError('--interval-ms applies only with --loop');
    }
    if (flags.module === undefined) throw usageError('--module is required');
    if (flags.export === '') throw usageError('--export must not be empty');
    const connectionString = readDatabaseUrl(context.env);
    const { operations, encryption } = await importOperations(flags.module, {
      cwd: process.cwd(),
      exportName: flags.export,
    });
    const options: ResumeOptions = {
      operations: operations.map(({ operation }) => operation),
      ...(encryption === undefined ? {} : { encryption }),
      batchSize: batchSize ?? DEFAULT_BATCH_SIZE,
      ...(leaseMs === undefined ? {} : { leaseMs }),
      ...(schema === undefined ? {} : { schema }),
    };
    // A second connection, so that an attempt's lease is renewed while its step's transaction
    // holds the first.
    const target = { connectionString, connectTimeoutMs, maxConnections: 2 };
    const outcome = await withDatabase(target, context, (db) =>
      flags.loop
        ? resumeInLoop(db, options, intervalMs ?? DEFAULT_INTERVAL_MS, context)
        : resumeOnce(db, options, context),
    );
    if (outcome.aborted) context.stdout('stopped before the first pass\n');
    return outcome.aborted ? EXIT_OK : outcome.value;
  },
});

async function resumeOnce(
  db: Kysely<unknown>,
  options: ResumeOptions,
  context: CommandContext,
): Promise<number> {
  const result = await resumeAbandonedOperations(db, withErrorReport(options, context));
  context.stdout(describeResult(result));
  return result.failed > 0 ? EXIT_FAILURE : EXIT_OK;
}

async function resumeInLoop(
  db: Kysely<unknown>,
  options: ResumeOptions,
  intervalMs: number,
  context: CommandContext,
): Promise<number> {
  const { signal, stdout, stderr } = context;
  const reported = withErrorReport(options, context);
  while (!signal.aborted) {
    try {
      const result = await resumeAbandonedOperations(db, reported);
      if (result.found > 0) stdout(describeResult(result));
    } catch (error) {
      // The database may come back: the next pass tries again.
      stderr(`idempotency-ledger operations resume: a pass failed: ${describeError(error)}\n`);
    }
    await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
  }
  return EXIT_OK;
}

function withErrorReport(
  options: ResumeOptions,
  { stderr, signal }: CommandContext,
): ResumeOptions {
  return {
    ...options,
    // SIGINT/SIGTERM stop a pass at its next operation: the one running finishes.
    signal,
    // The operation's name, not its key: keys are secrets of the caller.
    onError: (error, { name }) =>
      stderr(
        `idempotency-ledger operations resume: operation ${JSON.stringify(name)} failed: ` +
          `${describeError(error)}\n`,
      ),
  };
}

function describeResult(result: ResumeResult): string {
  const { found, finished, pending, skipped, failed } = result;
  return `found ${found}, finished ${finished}, pending ${pending}, skipped ${skipped}, failed ${failed}\n`;
}
