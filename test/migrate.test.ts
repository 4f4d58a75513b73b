import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LedgerSchemaError, migrate, readMigrations, withIdempotency } from '../src/index.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { expectAcquireOperationWorks } from './support/expect-acquire-operation.ts';

/** Every file this version ships, in the order migrate() applies them. */
const MIGRATIONS = readMigrations();
const MIGRATION_NAMES = MIGRATIONS.map(({ name }) => name);

let database: TestDatabase;
beforeEach(async () => {
  database = await createTestDatabase();
});
afterEach(async () => {
  await database?.drop();
});

async function appliedMigrations(schema = 'idempotency') {
  const { rows } = await sql<{ index: number; name: string }>`
    select index, name from ${sql.id(schema, 'ledger_migrations')}
     order by index`.execute(database.db);
  return rows;
}

describe('migrate', () => {
  it('creates the ledger in a fresh database, and a second run is a no-op', async () => {
    const first = await migrate({ connectionString: database.url });
    expect(first.applied).toEqual(MIGRATION_NAMES);
    // In the order of their numbers; any later file comes after these.
    expect(first.applied.slice(0, 2)).toEqual([
      '00001-create-ledger.sql',
      '00002-create-operations.sql',
    ]);
    const second = await migrate({ connectionString: database.url });
    expect(second.applied).toEqual([]);
    expect(await appliedMigrations()).toEqual(
      MIGRATIONS.map(({ index, name }) => ({ index, name })),
    );
    const result = await withIdempotency(database.db, { scope: 's', key: 'k' }, async () => 'ok');
    expect(result).toEqual({ response: 'ok', replayed: false });
    await expectAcquireOperationWorks(database.db, 'idempotency');
  });

  it('applies each migration exactly once when five deploys migrate at the same time', async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, () => migrate({ connectionString: database.url })),
    );
    // One deploy applied them all, in order; the others found nothing to do.
    expect(results.flatMap((r) => r.applied)).toEqual(MIGRATION_NAMES);
    expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
    expect(await appliedMigrations()).toHaveLength(MIGRATIONS.length);
  });

  it('keeps ledgers in separate schemas apart', async () => {
    await migrate({ connectionString: database.url, schema: 'app_one' });
    await migrate({ connectionString: database.url, schema: 'App Two' });
    await withIdempotency(database.db, { scope: 's', key: 'k', schema: 'app_one' }, async () => 1);
    const other = await withIdempotency(
      database.db,
      { scope: 's', key: 'k', schema: 'App Two' },
      async () => 2,
    );
    expect(other).toEqual({ response: 2, replayed: false });
    expect(await appliedMigrations('app_one')).toHaveLength(MIGRATIONS.length);
    expect(await appliedMigrations('App Two')).toHaveLength(MIGRATIONS.length);
    // Each schema's acquire_operation writes to its own tables, even called with the other
    // schema on the search_path: the same key is new in both.
    await expectAcquireOperationWorks(database.db, 'app_one', { searchPath: 'App Two' });
    await expectAcquireOperationWorks(database.db, 'App Two', { searchPath: 'app_one' });
  });

  it('refuses a database migrated by a newer version of the library', async () => {
    await migrate({ connectionString: database.url });
    await sql`
      insert into idempotency.ledger_migrations (index, name, checksum)
      values (99, '00099-from-the-future.sql', '')`.execute(database.db);
    const refused = migrate({ connectionString: database.url });
    await expect(refused).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(refused).rejects.toMatchObject({ code: 'ledger_schema', problem: 'newer' });
  });

  it("refuses a schema whose applied migration differs from this version's file", async () => {
    await migrate({ connectionString: database.url });
    await sql`
      update idempotency.ledger_migrations set checksum = repeat('0', 64)
       where index = 1`.execute(database.db);
    const refused = migrate({ connectionString: database.url });
    await expect(refused).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(refused).rejects.toMatchObject({ code: 'ledger_schema', problem: 'modified' });
  });

  it('tells withIdempotency callers to migrate when the ledger is missing', async () => {
    let ran = false;
    const call = withIdempotency(database.db, { scope: 's', key: 'k' }, async () => {
      ran = true;
    });
    await expect(call).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(call).rejects.toMatchObject({ problem: 'missing', schema: 'idempotency' });
    expect(ran).toBe(false);
  });

  it('runs from the command line with DATABASE_URL', async () => {
    const cli = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, [cli, ...args], {
        env: { ...process.env, DATABASE_URL: database.url },
      });
    expect((await run('migrate')).stdout).toBe(`applied ${MIGRATION_NAMES.join(', ')}\n`);
    expect((await run('migrate')).stdout).toBe('ledger is up to date\n');
    expect((await run('cleanup', '--batch-size', '10')).stdout).toBe('deleted 0 expired entries\n');
    await expect(run('frobnicate')).rejects.toMatchObject({ code: 2 });
    await expect(run('cleanup', '--bogus')).rejects.toMatchObject({ code: 2 });
    // Five Node processes, each loading kysely, pg and zod: seconds apiece on a saturated machine.
  }, 180_000);

  it('stops a paced cleanup from the command line after the running batch on SIGTERM', async () => {
    const { child, lines, exited } = await startCleanupCli('paced', [
      '--batch-size',
      '10',
      '--pause-ms',
      '600000',
    ]);
    const left = async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from idempotency.ledger where key like 'paced-%'`.execute(
        database.db,
      );
      return rows[0]?.n;
    };
    // Once the first batch has committed, the CLI pauses longer than the test would last.
    await expect
      .poll(left, {
        timeout: 20_000,
        interval: 10,
        message: 'the CLI cleanup to commit its first batch',
      })
      .not.toBe(25);
    child.kill('SIGTERM');
    expect((await lines.next()).value).toBe(
      'stopped: deleted 10 expired entries before the signal',
    );
    const [code] = await exited;
    expect(code).toBe(0);
    expect(await left()).toBe(15);
  });

  it('cleans up in a loop from the command line until SIGTERM', async () => {
    const { child, lines, exited } = await startCleanupCli('expired', [
      '--loop',
      '--interval-ms',
      '20',
      '--batch-size',
      '10',
    ]);
    expect((await lines.next()).value).toBe('deleted 25 expired entries');
    // Further ticks run, and find nothing left.
    expect((await lines.next()).value).toBe('deleted 0 expired entries');
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from idempotency.ledger`.execute(database.db);
    expect(rows[0]?.n).toBe(0);
  });
});

/** CLI processes started by a test; one that failed before stopping its child leaves it here. */
const cliChildren: ChildProcess[] = [];
afterEach(() => {
  for (const child of cliChildren.splice(0)) child.kill('SIGKILL');
});

/** Migrates, inserts 25 entries `<prefix>-1`… that expired an hour ago, and starts `cleanup`. */
async function startCleanupCli(prefix: string, flags: string[]) {
  await migrate({ connectionString: database.url });
  await sql`
    insert into idempotency.ledger (scope, key, expires_at)
    select 's', ${prefix} || '-' || g, statement_timestamp() - interval '1 hour'
      from generate_series(1, 25) g`.execute(database.db);
  const cli = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const child = spawn(process.execPath, [cli, 'cleanup', ...flags], {
    env: { ...process.env, DATABASE_URL: database.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cliChildren.push(child);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { child, lines, exited: once(child, 'exit') };
}
