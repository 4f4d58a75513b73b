/**
 * What migrate() accepts: every schema name the other entry points accept, every connection
 * string pg accepts, and nothing it cannot finish (a database that is not UTF-8, a server that
 * never answers), which it refuses before creating anything.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import {
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  migrate,
  readMigrations,
  withIdempotency,
} from '../src/index.ts';
import { useTestDatabase } from './support/database.ts';
import { expectAcquireOperationWorks } from './support/expect-acquire-operation.ts';

/** What a first migrate() applies: every file this version ships, in order. */
const ALL_MIGRATIONS = { applied: readMigrations().map(({ name }) => name) };

// One database for the file: each test migrates a schema of its own.
const database = useTestDatabase();

/** Executes then replays one key in `schema`, and acquires an operation: both work there. */
async function expectWorkingLedger(db: Kysely<unknown>, schema: string) {
  const call = () => withIdempotency(db, { scope: 's', key: 'k', schema }, async () => schema);
  expect(await call()).toEqual({ response: schema, replayed: false });
  expect(await call()).toEqual({ response: schema, replayed: true });
  await expectAcquireOperationWorks(db, schema);
}

async function schemas(db: Kysely<unknown>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select nspname as name from pg_namespace order by nspname`.execute(db);
  return rows.map((row) => row.name);
}

/** Runs `statement` as the suite's superuser, on the server's maintenance database. */
async function asAdmin(statement: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    return await client.query(statement);
  } finally {
    await client.end();
  }
}

describe('migrate() schema names', () => {
  it('accepts the names withIdempotency accepts, and the ledger works there', async () => {
    const names = [
      'Zahlungsvorgänge ✓', // not ASCII
      `${'é'.repeat(31)}x`, // 63 bytes of UTF-8 in 32 characters: the longest Postgres keeps
      'we"ird, name; --', // quotes, commas and spaces are quoted, never parsed
    ];
    for (const schema of names) {
      expect(await migrate({ connectionString: database.url, schema })).toEqual(ALL_MIGRATIONS);
      await expectWorkingLedger(database.db, schema);
    }
  });

  it('refuses a name Postgres would truncate or cannot put on a search_path, before creating anything', async () => {
    const before = await schemas(database.db);
    for (const schema of [`${'é'.repeat(32)}`, '$user', 'pg_ledger']) {
      const refused = migrate({ connectionString: database.url, schema });
      await expect(refused).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
      await expect(refused).rejects.toMatchObject({ issues: [expect.stringMatching(/^schema: /)] });
    }
    expect(await schemas(database.db)).toEqual(before);
  });
});

describe('migrate() connection strings', () => {
  it('connects through a Unix socket (postgres://user@/db?host=/var/run/postgresql)', async (context) => {
    const { rows } = await sql<{ directories: string; port: string }>`
      select current_setting('unix_socket_directories') as directories,
             current_setting('port') as port`.execute(database.db);
    const directory = rows[0]?.directories.split(',')[0]?.trim();
    if (!directory) {
      console.warn('The test server has no Unix socket: skipping the socket connection string');
      return context.skip();
    }
    const user = new URL(database.url).username;
    const url = `postgres://${user}@/${database.name}?host=${directory}&port=${rows[0]?.port}`;
    expect(await migrate({ connectionString: url, schema: 'by_socket' })).toEqual(ALL_MIGRATIONS);
    await expectWorkingLedger(database.db, 'by_socket');
  });

  it('takes a password with URL-encoded characters (@ : /) from a role that may create', async () => {
    const role = `idempotency_test_${randomBytes(6).toString('hex')}`;
    const password = 'p@ss:w/rd';
    await sql`create role ${sql.id(role)} login password ${sql.lit(password)}`.execute(database.db);
    try {
      await sql`grant create on database ${sql.id(database.name)} to ${sql.id(role)}`.execute(
        database.db,
      );
      const url = new URL(database.url);
      url.username = role;
      url.password = encodeURIComponent(password);
      expect(url.toString()).toContain('p%40ss%3Aw%2Frd@');
      expect(await migrate({ connectionString: url.toString(), schema: 'by_role' })).toEqual(
        ALL_MIGRATIONS,
      );
      const { rows } = await sql<{ owner: string }>`
        select nspowner::regrole::text as owner from pg_namespace
         where nspname = 'by_role'`.execute(database.db);
      expect(rows[0]?.owner).toBe(role);
      await expectWorkingLedger(database.db, 'by_role');
    } finally {
      await sql`drop owned by ${sql.id(role)}`.execute(database.db);
      await sql`drop role ${sql.id(role)}`.execute(database.db);
    }
  });

  it('gives up on a server that accepts the connection and never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const call = migrate({
        connectionString: `postgres://app@127.0.0.1:${port}/app`,
        connectTimeoutMs: 100,
      });
      await expect(call).rejects.toThrow(/timeout/);
      expect(sockets.length).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('refuses a connect timeout that is not a positive number of milliseconds', async () => {
    for (const connectTimeoutMs of [0, -1, 1.5]) {
      await expect(
        migrate({ connectionString: database.url, connectTimeoutMs }),
      ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    }
  });
});

describe('migrate() databases', () => {
  it('refuses a database that is not UTF-8, before creating anything', async () => {
    const name = `idempotency_test_${randomBytes(8).toString('hex')}`;
    await asAdmin(
      `create database ${name} encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C' template template0`,
    );
    try {
      const url = new URL(database.url);
      url.pathname = `/${name}`;
      const refused = migrate({ connectionString: url.toString() });
      await expect(refused).rejects.toBeInstanceOf(LedgerSchemaError);
      await expect(refused).rejects.toMatchObject({ problem: 'unsupported' });
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        const { rowCount } = await client.query(
          `select from pg_namespace where nspname = 'idempotency'`,
        );
        expect(rowCount).toBe(0);
      } finally {
        await client.end();
      }
    } finally {
      await asAdmin(`drop database if exists ${name} with (force)`);
    }
  });

  it('applies all or nothing: a migration that fails leaves no trace', async () => {
    // A ledger table that another tool left, without any record of it: 00001 cannot create its own.
    await sql`create schema half_done`.execute(database.db);
    await sql`create table half_done.ledger (id int)`.execute(database.db);
    await expect(
      migrate({ connectionString: database.url, schema: 'half_done' }),
    ).rejects.toMatchObject({ code: '42P07' }); // duplicate_table
    expect(await objectsIn('half_done')).toEqual(['ledger']);
  });

  it('rolls back the files applied before one that fails, and records none of them', async () => {
    // An operations table that another tool left: 00001 applies, then 00002 cannot create its own.
    await sql`create schema later_fails`.execute(database.db);
    await sql`create table later_fails.operations (id int)`.execute(database.db);
    await expect(
      migrate({ connectionString: database.url, schema: 'later_fails' }),
    ).rejects.toMatchObject({ code: '42P07' }); // duplicate_table
    // No ledger, no claim_key, no ledger_migrations: the next run starts from the beginning.
    expect(await objectsIn('later_fails')).toEqual(['operations']);
  });
});

/** The tables, indexes, sequences and functions in `schema`, by name. */
async function objectsIn(schema: string): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = ${schema} union all
    select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = ${schema}`.execute(database.db);
  return rows.map((row) => row.name);
}
