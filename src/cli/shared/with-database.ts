import { Kysely, PostgresDialect } from 'kysely';
import type { CommandContext } from './define-command.ts';
import { openPool } from './open-pool.ts';
import type { RaceOutcome } from './race-abort.ts';

/** Where {@link withDatabase} connects, and how long it waits. */
export interface DatabaseTarget {
  /** `DATABASE_URL`, as `readDatabaseUrl` checked it. */
  connectionString: string;
  connectTimeoutMs: number;
  /** Connections the pool may open. Default 1. */
  maxConnections?: number;
}

/**
 * Connects (a pool of `maxConnections`, see {@link openPool}), runs `work` with a Kysely over it,
 * and closes the pool however `work` ends. Resolves to `stopped` without running `work` when the
 * command's signal aborted before the connection was made (`aborted: true`).
 *
 * @throws {CliError} exit code 1, when the connection fails or times out.
 *
 * @example
 * ```ts
 * const outcome = await withDatabase(target, context, (db) => listOperationsInProgress(db));
 * if (outcome.aborted) return EXIT_OK; // stopped while connecting
 * ```
 */
export async function withDatabase<T>(
  { connectionString, ...options }: DatabaseTarget,
  { signal }: CommandContext,
  work: (db: Kysely<unknown>) => Promise<T>,
): Promise<RaceOutcome<T>> {
  const pool = await openPool(connectionString, { ...options, signal });
  if (pool === undefined) return { aborted: true };
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    return { aborted: false, value: await work(db) };
  } finally {
    await db.destroy();
  }
}
