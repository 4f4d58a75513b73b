// Connections made with the superuser URL the global setup decided on: creating, cloning and
// dropping databases. No vitest import here: the global setup uses this module too.

import pg from 'pg';

/** `url` with its database replaced by `database`. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** One connected client; the caller ends it. */
export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  // Errors surface through the query promises; this only stops a dropped
  // connection from becoming an uncaught 'error' event.
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * Runs one statement on its own connection, closed before this returns. The statement is built
 * with the client, so that identifiers are quoted with `client.escapeIdentifier()`.
 */
export async function adminQuery(
  url: string,
  statement: (client: pg.Client) => string,
): Promise<void> {
  const client = await connect(url);
  try {
    await client.query(statement(client));
  } finally {
    await client.end();
  }
}
