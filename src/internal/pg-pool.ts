import pg from 'pg';
import { handlePoolErrors } from '../pool-errors.ts';

/** A pool for the library's own connections (migrate, the CLI) that survives dying backends. */
export function createPool(connectionString: string, max: number): pg.Pool {
  return handlePoolErrors(new pg.Pool({ connectionString, max }));
}
