/**
 * A client process's database connections: an ordinary pool, and a "tight" pool whose every
 * connection runs with a tiny, random statement_timeout and lock_timeout, so that some statements
 * get cancelled (57014) or give up on a lock (55P03) mid-transaction. Every query on both goes
 * through the armed faults first.
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { ClientFaults } from './client-faults.ts';
import type { Prng } from './prng.ts';

export interface ClientDatabases {
  // biome-ignore lint/suspicious/noExplicitAny: the chaos tables are only queried with raw SQL.
  steady: Kysely<any>;
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  tight: Kysely<any>;
  destroy(): Promise<void>;
}

type QueryFn = (...args: unknown[]) => unknown;

export function createClientDatabases(
  url: string,
  applicationName: string,
  size: number,
  rng: Prng,
  faults: ClientFaults,
): ClientDatabases {
  const steady = createPool(url, applicationName, size, faults);
  const tight = createPool(url, applicationName, size, faults, (client) => {
    const statementMs = rng.int(2, 40);
    const lockMs = rng.int(1, 15);
    // Queued before anything the library sends on this connection.
    client
      .query(
        "select set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false)",
        [`${statementMs}ms`, `${lockMs}ms`],
      )
      .catch(() => undefined);
  });
  const steadyDb = new Kysely({ dialect: new PostgresDialect({ pool: steady }) });
  const tightDb = new Kysely({ dialect: new PostgresDialect({ pool: tight }) });
  return {
    steady: steadyDb,
    tight: tightDb,
    async destroy() {
      await Promise.all([steadyDb.destroy(), tightDb.destroy()]);
    },
  };
}

function createPool(
  url: string,
  applicationName: string,
  max: number,
  faults: ClientFaults,
  onConnect?: (client: pg.PoolClient) => void,
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: applicationName,
    max,
    // While the server restarts, connecting fails fast (refused); this only bounds a hang.
    connectionTimeoutMillis: 10_000,
  });
  // Backends die under the clients all the time here (terminations, restarts, cut sockets): pg
  // emits 'error' on the pool for an idle client and on the client itself when it is checked
  // out. The query in flight reports the failure; unheard, the event would crash the process.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    onConnect?.(client);
    const query = client.query.bind(client) as QueryFn;
    client.query = ((...args: unknown[]) => {
      const [first] = args;
      const text = typeof first === 'string' ? first : ((first as { text?: string })?.text ?? '');
      return faults.intercept(text, client, () => query(...args));
    }) as typeof client.query;
  });
  return pool;
}
