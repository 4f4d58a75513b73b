import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** A service process under load, driven line by line over stdin/stdout. */
function startService(mode: 'protected' | 'unprotected') {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./support/survival-child.ts', import.meta.url)), fx.url, mode],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines = createInterface({ input: child.stdout as NonNullable<ChildProcess['stdout']> })[
    Symbol.asyncIterator
  ]();
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  return {
    exited,
    stderr: () => stderr,
    send: (line: string) => child.stdin?.write(`${line}\n`),
    next: async () => (await lines.next()).value as string,
  };
}

/** Terminates every backend of the service; returns how many there were. */
async function killServiceBackends(): Promise<number> {
  const { rows } = await sql<{ killed: number }>`
    select count(pg_terminate_backend(pid))::int as killed from pg_stat_activity
     where application_name = 'survival-child' and datname = current_database()`.execute(fx.db);
  return rows[0]?.killed ?? 0;
}

/** Waits until the service has at least one connection again. */
async function waitForServiceConnections() {
  const connections = async () => {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
       where application_name = 'survival-child' and datname = current_database()`.execute(fx.db);
    return rows[0]?.n ?? 0;
  };
  await expect
    .poll(connections, {
      timeout: 20_000,
      interval: 10,
      message: 'the service to connect to the database again',
    })
    .toBeGreaterThan(0);
}

describe('a service whose database connections die', () => {
  it('stays up with handlePoolErrors(), and executes every key at most once', async () => {
    const service = startService('protected');
    expect(await service.next()).toBe('ready');
    let killed = 0;
    for (let round = 0; round < 10; round++) {
      await waitForServiceConnections();
      killed += await killServiceBackends();
    }
    // Idle pooled connections die too: the case that crashes a pool without listeners.
    service.send('pause');
    expect(await service.next()).toBe('paused');
    killed += await killServiceBackends();
    service.send('resume');
    await waitForServiceConnections();
    service.send('stop');
    const line = await service.next();
    // A service that ended before its summary: say how, rather than fail on parsing nothing.
    if (line === undefined) {
      const [exitCode, signal] = await service.exited;
      expect.fail(`the service ended (code ${exitCode}, signal ${signal}): ${service.stderr()}`);
    }
    const summary = JSON.parse(line);
    const [code] = await service.exited;

    expect(code, service.stderr()).toBe(0);
    expect(killed).toBeGreaterThan(0);
    expect(summary.connectionErrors).toBeGreaterThan(0);
    expect(summary.duplicates).toBe(0);
  });

  it('crashes without those listeners when idle connections die (what the helper prevents)', async () => {
    const service = startService('unprotected');
    expect(await service.next()).toBe('ready');
    service.send('pause');
    expect(await service.next()).toBe('paused');
    expect(await killServiceBackends()).toBeGreaterThan(0);
    const [code] = await service.exited;
    expect(code).not.toBe(0);
    expect(service.stderr()).toContain("Unhandled 'error' event");
  });
});
