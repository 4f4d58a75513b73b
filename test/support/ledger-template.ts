// The migrated database that every ledger fixture is cloned from. The global setup builds it once
// per run; each test file then gets an identical copy (CREATE DATABASE ... TEMPLATE), instead of
// creating an empty database and running the migrations into it again.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrate } from '../../src/index.ts';
import { adminQuery, connect, withDatabase } from './admin-query.ts';

export type LedgerTemplate = {
  /** The database to pass as `template` to createTestDatabase(). */
  name: string;
  /** Drops the template. Safe to call more than once. */
  drop(): Promise<void>;
};

/** The caller's business table in the tests (`PaymentsTable` in ledger-fixture.ts). */
const CREATE_PAYMENTS = `
  create table payments (
    id bigserial primary key,
    scope text not null,
    key text not null,
    amount integer not null
  )`;

/** How long the sessions that built the template may take to leave it. */
const SESSIONS_GONE_TIMEOUT_MS = 10_000;

/**
 * Creates a database, migrates the ledger into it, adds the `payments` table, and closes it to
 * connections. If any step fails, the database is dropped before the error is thrown.
 *
 * @example
 * ```ts
 * const template = await createLedgerTemplate(adminUrl);
 * // ... create database x template <template.name> ...
 * await template.drop();
 * ```
 */
export async function createLedgerTemplate(adminUrl: string): Promise<LedgerTemplate> {
  // Several runs may share one server (CI beside a developer): each builds and drops its own.
  const name = `idempotency_template_${randomBytes(6).toString('hex')}`;
  await adminQuery(
    adminUrl,
    (client) => `create database ${client.escapeIdentifier(name)} template template0`,
  );
  let dropped: Promise<void> | undefined;
  const drop = () => {
    dropped ??= dropTemplate(adminUrl, name);
    return dropped;
  };
  try {
    const url = withDatabase(adminUrl, name);
    // migrate() closes its own connections before it returns.
    await migrate({ connectionString: url });
    await adminQuery(url, () => CREATE_PAYMENTS);
    // CREATE DATABASE ... TEMPLATE fails while any session is connected to the template, so one
    // stray connection would break every test file's clone. allow_connections false refuses new
    // ones, even a superuser's; is_template makes a careless `drop database` refuse it too.
    await adminQuery(
      adminUrl,
      (client) =>
        `alter database ${client.escapeIdentifier(name)} with is_template true allow_connections false`,
    );
    await waitForNoSessions(adminUrl, name);
  } catch (error) {
    // The error of the step that failed is the one to report.
    await drop().catch(() => undefined);
    throw error;
  }
  return { name, drop };
}

async function dropTemplate(adminUrl: string, name: string): Promise<void> {
  const client = await connect(adminUrl);
  try {
    const { rowCount } = await client.query('select from pg_database where datname = $1', [name]);
    if (rowCount === 0) return;
    const id = client.escapeIdentifier(name);
    // Postgres refuses to drop a database marked as a template.
    await client.query(`alter database ${id} with is_template false`);
    await client.query(`drop database ${id} with (force)`);
  } finally {
    await client.end();
  }
}

/**
 * Waits until the sessions that built the template have left it: a backend may still be exiting
 * after its client has closed the socket. Fails, naming them, if any stays.
 */
async function waitForNoSessions(adminUrl: string, name: string): Promise<void> {
  const client = await connect(adminUrl);
  try {
    const deadline = Date.now() + SESSIONS_GONE_TIMEOUT_MS;
    for (;;) {
      const { rows } = await client.query<{ pid: number; application_name: string }>(
        'select pid, application_name from pg_stat_activity where datname = $1',
        [name],
      );
      if (rows.length === 0) return;
      if (Date.now() > deadline) {
        const sessions = rows.map((row) => `${row.pid} (${row.application_name || 'no name'})`);
        throw new Error(
          `${rows.length} session(s) still connected to the template database ${name} ` +
            `${SESSIONS_GONE_TIMEOUT_MS} ms after it was built: ${sessions.join(', ')}`,
        );
      }
      await sleep(20);
    }
  } finally {
    await client.end();
  }
}
