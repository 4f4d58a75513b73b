/**
 * A payment service under test for the conformance kit: its own fresh database, the server as a
 * child process, and what the kit needs to count effects and crash it. Everything it starts is
 * stopped and dropped when the test ends, passed or failed.
 */
import { type Kysely, sql } from 'kysely';
import { onTestFinished } from 'vitest';
import type { CrashControl, IdempotencyContractOptions } from '../../../src/conformance/index.ts';
import { expectNoCheckedOutClients } from '../../support/database.ts';
import { createLedgerFixture } from '../../support/ledger-fixture.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

export interface ConformanceTarget {
  /** The server running now (a new one after each crash). */
  readonly server: ServerProcess;
  /** The server's database, for the test's own statements. */
  readonly db: Kysely<unknown>;
  /** The kit's options for this target: the example contract's endpoint, effects and crash. */
  contractOptions(): IdempotencyContractOptions;
}

/**
 * Starts `node <file>` on a fresh database cloned from the ledger template. The template's own
 * `payments` table (the core tests' shape) is dropped first: the server creates the example
 * contract's.
 *
 * @example
 * ```ts
 * const target = await startConformanceTarget('examples/http/express/server.ts');
 * const report = await checkIdempotencyContract(target.contractOptions());
 * expect(await target.server.stop()).toBe(0);
 * ```
 */
export async function startConformanceTarget(
  file: string,
  env: Record<string, string> = {},
): Promise<ConformanceTarget> {
  const database = await createLedgerFixture();
  const servers: ServerProcess[] = [];
  // Aborted when the test ends: kills every server, including one a late restart() starts
  // after the kit gave up on it.
  const testOver = new AbortController();
  onTestFinished(async () => {
    testOver.abort();
    try {
      // Gone before the drop, so that no server reconnects to a database being dropped.
      await Promise.all(servers.map((server) => server.kill()));
      expectNoCheckedOutClients(database.pool, "the effect counter's pool");
    } finally {
      await database.drop();
    }
  });
  await sql`drop table payments`.execute(database.db);
  const start = async () => {
    const server = await startServerProcess(
      file,
      { ...env, DATABASE_URL: database.url, PORT: '0' },
      testOver.signal,
    );
    servers.push(server);
    return server;
  };
  let current = await start();

  const countEffects = async (key: string) => {
    const { rows } = await sql<{ count: number }>`
      select count(*)::int as count from payments where idempotency_key = ${key}`.execute(
      database.db,
    );
    return rows[0]?.count ?? Number.NaN;
  };
  const crash: CrashControl = {
    kill: () => current.kill(),
    restart: async () => {
      current = await start();
      return current.baseUrl;
    },
  };
  return {
    get server() {
      return current;
    },
    db: database.db as Kysely<unknown>,
    contractOptions: () => ({
      baseUrl: current.baseUrl,
      path: '/payments',
      headers: { 'merchant-id': 'conformance' },
      body: (n) => ({ amount_cents: 100 + n, currency: 'EUR' }),
      countEffects,
      crash,
      // The crash check includes a server restart: seconds on a loaded machine, not 30.
      checkTimeoutMs: 90_000,
    }),
  };
}
