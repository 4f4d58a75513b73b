import { once } from 'node:events';
import { Kysely, PostgresDialect } from 'kysely';
import { cleanupExpired, scheduleCleanup } from '../../index.ts';
import { EXIT_FAILURE, EXIT_OK, usageError } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { readDatabaseUrl } from '../shared/database-url.ts';
import { type CommandContext, defineCommand } from '../shared/define-command.ts';
import { describeError } from '../shared/describe-error.ts';
import { integerFlag, MAX_TIMER_MS } from '../shared/integer-flag.ts';
import { openPool } from '../shared/open-pool.ts';
import { startProgress } from '../shared/progress.ts';

const CLEANUP_FLAGS = {
  ...CONNECTION_FLAGS,
  'batch-size': { type: 'string' },
  'pause-ms': { type: 'string' },
  loop: { type: 'boolean' },
  'interval-ms': { type: 'string' },
} as const;

/** The library refuses larger batches; the flag says so before connecting. */
const MAX_BATCH_SIZE = 1_000_000;

/**
 * `idempotency-ledger cleanup`: deletes expired entries once with {@link cleanupExpired}, or
 * keeps doing so with {@link scheduleCleanup} under `--loop`.
 *
 * @example
 * ```ts
 * const code = await cleanupCommand.run(['--batch-size', '500'], context);
 * ```
 */
export const cleanupCommand = defineCommand({
  name: 'cleanup',
  summary: 'delete expired entries, once or every --interval-ms with --loop',
  usage: `Usage: idempotency-ledger cleanup [--schema NAME] [--batch-size N] [--pause-ms N]
                                  [--loop [--interval-ms N]] [--connect-timeout-ms N]

Deletes expired ledger entries in batches, then exits; with --loop, again every --interval-ms.

  --batch-size N           entries deleted per statement (default 1000)
  --pause-ms N             wait after each full batch (default 0 once, 10 with --loop)
  --loop                   keep running until SIGINT/SIGTERM
  --interval-ms N          time between two runs with --loop (default 60000)
${CONNECTION_FLAGS_USAGE}

Once, on a terminal, standard error shows the count deleted so far. SIGINT/SIGTERM stop it after
the running batch, or while it connects (exit code 0).
`,
  flags: CLEANUP_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const batchSize = integerFlag('batch-size', flags['batch-size'], {
      min: 1,
      max: MAX_BATCH_SIZE,
    });
    const pauseMs = integerFlag('pause-ms', flags['pause-ms'], { min: 0, max: MAX_TIMER_MS });
    const intervalMs = integerFlag('interval-ms', flags['interval-ms'], {
      min: 1,
      max: MAX_TIMER_MS,
    });
    if (intervalMs !== undefined && !flags.loop) {
      throw usageError('--interval-ms applies only with --loop');
    }
    const connectionString = readDatabaseUrl(context.env);
    const options = {
      ...(schema === undefined ? {} : { schema }),
      ...(batchSize === undefined ? {} : { batchSize }),
      ...(pauseMs === undefined ? {} : { pauseMs }),
    };
    const pool = await openPool(connectionString, { connectTimeoutMs, signal: context.signal });
    const db = pool && new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    try {
      if (!flags.loop) return await cleanUpOnce(db, options, context);
      if (db === undefined) return EXIT_OK; // stopped while connecting
      return await cleanUpInLoop(
        db,
        { ...options, ...(intervalMs ? { intervalMs } : {}) },
        context,
      );
    } finally {
      await db?.destroy();
    }
  },
});

type Options = { schema?: string; batchSize?: number; pauseMs?: number };

async function cleanUpOnce(
  db: Kysely<unknown> | undefined,
  options: Options,
  context: CommandContext,
): Promise<number> {
  const { stdout, signal } = context;
  let deleted = 0;
  if (db) {
    // A large backlog takes minutes to drain: a terminal shows the count as it grows.
    const progress = startProgress(context, 'cleanup');
    progress.stage('deleting expired entries');
    try {
      ({ deleted } = await cleanupExpired(db, {
        ...options,
        signal,
        onBatch: (sofar) => progress.update(`deleted ${sofar} expired entries`),
      }));
    } finally {
      progress.done();
    }
  }
  stdout(
    signal.aborted
      ? `stopped: deleted ${deleted} expired entries before the signal\n`
      : `deleted ${deleted} expired entries\n`,
  );
  return EXIT_OK;
}

async function cleanUpInLoop(
  db: Kysely<unknown>,
  options: Options & { intervalMs?: number },
  { stdout, stderr, signal }: CommandContext,
): Promise<number> {
  let failed = false;
  const schedule = scheduleCleanup(db, {
    ...options,
    onTick: ({ ran, deleted }) => {
      if (ran) stdout(`deleted ${deleted} expired entries\n`);
    },
    onError: (error) => {
      stderr(`cleanup failed: ${describeError(error)}\n`);
      failed = true;
    },
  });
  if (!signal.aborted) await once(signal, 'abort');
  await schedule.stop();
  return failed ? EXIT_FAILURE : EXIT_OK;
}
