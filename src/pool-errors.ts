/**
 * The listeners a `pg` pool needs so that a dying database connection cannot crash the process.
 *
 * When a backend goes away (a failover, a restart, `pg_terminate_backend`, a network cut), `pg`
 * emits 'error' on the client: on the pool when the client was idle in it, on the client itself
 * when it was checked out between two queries. An 'error' event without a listener is thrown by
 * Node and takes the whole service down. The library cannot attach to a pool it does not own, so
 * this helper is for the pool you create. The failure still reaches the query that was running or
 * runs next, where `withIdempotency` reports it (and nothing was committed).
 */

interface ErrorEmitter {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** The part of a `pg.Pool` this helper uses. */
export interface PoolEvents {
  on(event: 'error', listener: (error: Error, client: unknown) => void): unknown;
  on(event: 'connect', listener: (client: ErrorEmitter) => void): unknown;
}

/**
 * Adds the 'error' listeners a `pg.Pool` needs, and returns the pool.
 *
 * @param onError - Hears each connection error, e.g. to log or count it. Default: ignore it.
 *
 * @example
 * ```ts
 * const pool = handlePoolErrors(new pg.Pool({ connectionString }), (error) =>
 *   logger.warn({ error }, 'database connection lost'),
 * );
 * const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
 * ```
 */
export function handlePoolErrors<P extends PoolEvents>(
  pool: P,
  onError: (error: Error) => void = () => undefined,
): P {
  const report = (error: Error) => {
    try {
      onError(error);
    } catch {
      // A throwing listener would be the very crash this helper exists to prevent.
    }
  };
  pool.on('error', (error) => report(error));
  pool.on('connect', (client) => {
    client.on('error', report);
  });
  return pool;
}
