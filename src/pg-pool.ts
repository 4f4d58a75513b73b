import pg from 'pg';

/**
 * A pg pool for the library's own connections (migrate, the CLI) that survives a backend dying
 * under it. pg emits 'error' on a client whose connection breaks: on the pool for an idle client,
 * on the client itself when it is checked out between two queries. Unheard, either event crashes
 * the process; the failure still reaches the query that was running or runs next.
 */
export function createPool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}
