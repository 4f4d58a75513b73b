import { integerFlag, MAX_TIMER_MS } from './integer-flag.ts';
import type { FlagValues } from './parse-flags.ts';

/** How long a command waits for the database to answer a connection attempt, by default. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** The flags of every command that connects to the ledger. */
export const CONNECTION_FLAGS = {
  schema: { type: 'string' },
  'connect-timeout-ms': { type: 'string' },
} as const;

/** The usage lines of {@link CONNECTION_FLAGS}. */
export const CONNECTION_FLAGS_USAGE = `  --schema NAME            Postgres schema of the ledger (default idempotency)
  --connect-timeout-ms N   give up on a database that does not answer within N ms
                           (default ${DEFAULT_CONNECT_TIMEOUT_MS})`;

/**
 * The connection settings the flags ask for.
 *
 * @example
 * ```ts
 * const { schema, connectTimeoutMs } = connectionSettings(flags);
 * ```
 */
export function connectionSettings(flags: FlagValues<typeof CONNECTION_FLAGS>): {
  schema: string | undefined;
  connectTimeoutMs: number;
} {
  return {
    schema: flags.schema,
    connectTimeoutMs:
      integerFlag('connect-timeout-ms', flags['connect-timeout-ms'], {
        min: 1,
        max: MAX_TIMER_MS,
      }) ?? DEFAULT_CONNECT_TIMEOUT_MS,
  };
}
