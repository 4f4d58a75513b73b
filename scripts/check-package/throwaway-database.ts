import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startEmbeddedPostgres } from '../embedded-postgres.ts';

export interface ThrowawayDatabase {
  /** Connection string of the new, empty database. */
  url: string;
  /** Where it runs, for the log: `DATABASE_URL` or `embedded`. */
  source: string;
  /** Drops the database (and stops the embedded server, if one was started). */
  drop(): Promise<void>;
}

/**
 * Creates an empty database on the server of DATABASE_URL (a superuser URL), or on a throwaway
 * embedded Postgres when it is unset, as the test suite does.
 *
 * @example
 * ```ts
 * const database = await createThrowawayDatabase();
 * try { await migrate({ connectionString: database.url }); } finally { await database.drop(); }
 * ```
 */
export async function createThrowawayDatabase(): Promise<ThrowawayDatabase> {
  let adminUrl = process.env.DATABASE_URL;
  const server = adminUrl ? undefined : await startEmbeddedPostgres();
  adminUrl ??= server?.url ?? '';
  const name = `idempotency_package_check_${randomBytes(6).toString('hex')}`;
  try {
    // template0: CREATE DATABASE fails while anyone is connected to its template (template1).
    await adminQuery(
      adminUrl,
      (client) => `create database ${client.escapeIdentifier(name)} template template0`,
    );
  } catch (error) {
    await server?.stop();
    throw error;
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    source: server ? 'embedded' : 'DATABASE_URL',
    drop: async () => {
      try {
        await adminQuery(
          adminUrl,
          (client) => `drop database if exists ${client.escapeIdentifier(name)} with (force)`,
        );
      } finally {
        await server?.stop();
      }
    },
  };
}

async function adminQuery(url: string, statement: (client: pg.Client) => string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement(client));
  } finally {
    await client.end();
  }
}
