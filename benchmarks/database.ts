// A dedicated database for one benchmark run: on the DATABASE_URL server when it is set, else on a
// throwaway embedded Postgres. close() drops it (and stops the embedded server) in every case.
import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { startEmbeddedPostgres } from '../scripts/embedded-postgres.ts';
import { type BenchDB, createChargesTable } from './business.ts';
import { handlePoolErrors } from './library.ts';
import { counters, statementLog } from './measure.ts';

/** Connections the throughput variants share: one per worker at c=16. */
export const POOL_SIZE = 16;

export interface ServerInfo {
  source: 'DATABASE_URL' | 'embedded';
  /** host:port, no credentials. */
  address: string;
  version: string;
  versionNum: number;
  /** Settings that move the numbers most. */
  settings: Record<string, string>;
}

export interface BenchDatabase {
  name: string;
  url: string;
  server: ServerInfo;
  db: Kysely<BenchDB>;
  /** Drops the database and stops an embedded server. Safe to call more than once. */
  close(): Promise<void>;
}

const REPORTED_SETTINGS = [
  'fsync',
  'synchronous_commit',
  'wal_sync_method',
  'full_page_writes',
  'shared_buffers',
  'max_connections',
];

export async function openBenchDatabase(): Promise<BenchDatabase> {
  const fromEnv = process.env.DATABASE_URL;
  const embedded = fromEnv ? undefined : await startEmbeddedPostgres();
  const adminUrl = embedded?.url ?? (fromEnv as string);
  const name = `idempotency_bench_${randomBytes(6).toString('hex')}`;
  let db: Kysely<BenchDB> | undefined;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      try {
        await db?.destroy();
        await adminQuery(
          adminUrl,
          `drop database if exists ${pg.escapeIdentifier(name)} with (force)`,
        );
      } finally {
        await embedded?.stop();
      }
    })();
    return closing;
  };

  try {
    // template0: CREATE DATABASE fails while anyone (a test run) is connected to template1.
    await adminQuery(adminUrl, `create database ${pg.escapeIdentifier(name)} template template0`);
    // The variants measure durable commits, whatever the server's default is.
    await adminQuery(
      adminUrl,
      `alter database ${pg.escapeIdentifier(name)} set synchronous_commit = on`,
    );
    const url = withDatabase(adminUrl, name);
    db = countingKysely(url);
    await createChargesTable(db);
    const server = await describeServer(db, adminUrl, fromEnv ? 'DATABASE_URL' : 'embedded');
    return { name, url, server, db, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Kysely over a counting pool of POOL_SIZE connections to `url` (the RTT section's route through
 * a delay proxy). Options go to the pool, e.g. `idleTimeoutMillis: 0` to keep its connections.
 */
export function countingKysely(url: string, options: pg.PoolConfig = {}): Kysely<BenchDB> {
  return new Kysely<BenchDB>({
    dialect: new PostgresDialect({ pool: countingPool(url, options) }),
  });
}

/** A pool whose clients count every query they send: one query is one round trip with pg. */
function countingPool(url: string, options: pg.PoolConfig = {}): pg.Pool {
  const pool = handlePoolErrors(new pg.Pool({ ...options, connectionString: url, max: POOL_SIZE }));
  pool.on('connect', (client) => {
    const query = client.query;
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      counters.pgQueries++;
      if (statementLog.lines) {
        const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text;
        statementLog.lines.push(text.trim().split(/\s+/).slice(0, 4).join(' ').toLowerCase());
      }
      return (query as (...args: unknown[]) => unknown).apply(this, args);
    } as typeof client.query;
  });
  return pool;
}

async function describeServer(
  db: Kysely<BenchDB>,
  adminUrl: string,
  source: ServerInfo['source'],
): Promise<ServerInfo> {
  const { rows } = await sql<{ name: string; setting: string }>`
    select name, current_setting(name) as setting from pg_settings
     where name = any(${[...REPORTED_SETTINGS, 'server_version', 'server_version_num']})`.execute(
    db,
  );
  const settings = Object.fromEntries(rows.map((row) => [row.name, row.setting]));
  const { server_version: version = '?', server_version_num: versionNum = '0', ...rest } = settings;
  const parsed = new URL(adminUrl);
  return {
    source,
    address: `${parsed.hostname}:${parsed.port || 5432}`,
    version,
    versionNum: Number(versionNum),
    settings: rest,
  };
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

async function adminQuery(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // errors reach the query; this only prevents a crash
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
