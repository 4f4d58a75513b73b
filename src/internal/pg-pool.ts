import pg from 'pg';
import { handlePoolErrors } from '../pool-errors.ts';

/**
 * A pool for the library's own connections (migrate, the CLI) that survives dying backends.
 * `connectTimeoutMs` bounds each connection attempt; without it a host that accepts TCP and never
 * answers would hold the caller forever.
 */
export function createPool(
  connectionString: string,
  max: number,
  connectTimeoutMs?: number,
): pg.Pool {
  return handlePoolErrors(
    new pg.Pool({
      connectionString,
      max,
      ...(connectTimeoutMs === undefined ? {} : { connectionTimeoutMillis: connectTimeoutMs }),
    }),
  );
}
