import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.ts';

/** A database that exists for one demo run. */
export interface DemoDatabase {
  url: string;
  /** Said in the summary: where the demo ran. */
  description: string;
  /** Removes everything the demo created. Safe to call more than once. */
  dispose(): Promise<void>;
}

/**
 * With DATABASE_URL, a fresh `idempotency_demo_<random>` database on that server, dropped again
 * by dispose(): the server may be shared, so the demo must not leave tables behind. Without it, a
 * throwaway embedded Postgres that dispose() stops and deletes.
 */
export async function provisionDatabase(): Promise<DemoDatabase> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    const server = await startEmbeddedPostgres();
    return {
      url: server.url,
      description: 'embedded Postgres',
      dispose: () => server.stop(),
    };
  }

  const name = `idempotency_demo_${randomBytes(6).toString('hex')}`;
  // template0: CREATE DATABASE fails while anyone is connected to template1, and on a shared
  // server someone may be.
  await adminQuery(
    serverUrl,
    (c) => `create database ${c.escapeIdentifier(name)} template template0`,
  );
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let disposed: Promise<void> | undefined;
  return {
    url: url.href,
    description: `database ${name} on ${url.host}`,
    dispose() {
      // with (force): backends of a SIGKILLed server process can outlive it for a moment.
      disposed ??= adminQuery(
        serverUrl,
        (c) => `drop database if exists ${c.escapeIdentifier(name)} with (force)`,
      );
      return disposed;
    },
  };
}

async function adminQuery(url: string, statement: (client: pg.Client) => string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(statement(client));
  } finally {
    await client.end();
  }
}
