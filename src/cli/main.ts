#!/usr/bin/env node
/**
 * `idempotency-ledger migrate` and `idempotency-ledger cleanup`: thin wrappers over migrate(),
 * cleanupExpired() and scheduleCleanup(), configured by DATABASE_URL and flags.
 */
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  cleanupExpired,
  handlePoolErrors,
  IdempotencyError,
  migrate,
  scheduleCleanup,
} from '../index.ts';

const USAGE = `Usage:
  idempotency-ledger migrate [--schema NAME]
  idempotency-ledger cleanup [--schema NAME] [--batch-size N] [--pause-ms N]
                             [--loop [--interval-ms N]]

Reads the connection string from DATABASE_URL.

  migrate   create or upgrade the ledger (safe to run from several deploys at once)
  cleanup   delete expired entries once, or every --interval-ms (default 60000) with --loop;
            --pause-ms waits after each full batch (default 0 once, 10 with --loop);
            SIGINT/SIGTERM stop after the running batch
`;

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (error) {
    // An unknown or malformed flag is a usage error, like an unknown command.
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { positionals, values } = parsed;
  const command = positionals[0];
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) {
    process.stderr.write('DATABASE_URL is not set\n');
    return 2;
  }
  const schema = values.schema;
  switch (command) {
    case 'migrate': {
      const { applied } = await migrate({ connectionString, ...(schema ? { schema } : {}) });
      process.stdout.write(
        applied.length ? `applied ${applied.join(', ')}\n` : 'ledger is up to date\n',
      );
      return 0;
    }
    case 'cleanup':
      return cleanup(connectionString, schema, values);
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function cleanup(
  connectionString: string,
  schema: string | undefined,
  flags: {
    'batch-size'?: string | undefined;
    'pause-ms'?: string | undefined;
    'interval-ms'?: string | undefined;
    loop: boolean;
  },
): Promise<number> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({
      pool: handlePoolErrors(new pg.Pool({ connectionString, max: 1 })),
    }),
  });
  const options = {
    ...(schema ? { schema } : {}),
    ...(flags['batch-size'] ? { batchSize: Number(flags['batch-size']) } : {}),
    ...(flags['pause-ms'] ? { pauseMs: Number(flags['pause-ms']) } : {}),
  };
  try {
    if (!flags.loop) {
      const stopping = new AbortController();
      const stop = () => stopping.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const { deleted } = await cleanupExpired(db, { ...options, signal: stopping.signal });
        process.stdout.write(
          stopping.signal.aborted
            ? `stopped: deleted ${deleted} expired entries before the signal\n`
            : `deleted ${deleted} expired entries\n`,
        );
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return 0;
    }
    let failed = false;
    const schedule = scheduleCleanup(db, {
      ...options,
      ...(flags['interval-ms'] ? { intervalMs: Number(flags['interval-ms']) } : {}),
      onTick: ({ ran, deleted }) => {
        if (ran) process.stdout.write(`deleted ${deleted} expired entries\n`);
      },
      onError: (error) => {
        process.stderr.write(`cleanup failed: ${String(error)}\n`);
        failed = true;
      },
    });
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await schedule.stop();
    return failed ? 1 : 0;
  } finally {
    await db.destroy();
  }
}

function parseFlags(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      schema: { type: 'string' },
      'batch-size': { type: 'string' },
      'pause-ms': { type: 'string' },
      'interval-ms': { type: 'string' },
      loop: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof IdempotencyError ? error.message : String(error);
    process.stderr.write(`idempotency-ledger: ${message}\n`);
    process.exitCode = 1;
  },
);
