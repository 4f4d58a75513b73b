// The command line against databases that answer, never answer, or refuse: timeouts, signals
// while connecting, the forms of DATABASE_URL pg accepts, and passwords kept out of messages.

import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { readMigrations } from '../../src/index.ts';
import { useTestDatabase } from '../support/database.ts';
import { runInProcess, startSilentServer } from './support.ts';

const database = useTestDatabase();

/** The test database's URL with `password` in place of its own, percent-encoded as needed. */
function urlWithPassword(password: string, databaseName = database.name): string {
  const url = new URL(database.url);
  url.password = password;
  url.pathname = `/${databaseName}`;
  return url.toString();
}

describe('a host that accepts connections and never answers', () => {
  for (const command of ['migrate', 'cleanup']) {
    it(`fails ${command} with a clear error once --connect-timeout-ms has passed`, async () => {
      const server = await startSilentServer();
      const run = await runInProcess([command, '--connect-timeout-ms', '200'], {
        DATABASE_URL: server.url,
      });
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        new RegExp(
          `^idempotency-ledger ${command}: .*Connection terminated due to connection timeout\\n$`,
        ),
      );
      expect(server.accepted.length).toBeGreaterThan(0);
      expect(run.stderr).not.toContain('secret-pw');
    });
  }

  it('fails cleanup --loop at start rather than scheduling against it', async () => {
    const server = await startSilentServer();
    const run = await runInProcess(['cleanup', '--loop', '--connect-timeout-ms', '200'], {
      DATABASE_URL: server.url,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('cannot connect to the database');
  });
});

describe('a stop signal while connecting', () => {
  // The connect timeout outlasts the test: only the signal can end these runs in time.
  const forever = ['--connect-timeout-ms', '600000'];

  it('stops a one-off cleanup at once, deleting nothing, and closes its connection', async () => {
    const server = await startSilentServer();
    const stopping = new AbortController();
    const run = runInProcess(
      ['cleanup', ...forever],
      { DATABASE_URL: server.url },
      stopping.signal,
    );
    const socket = await server.firstConnection;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    stopping.abort();
    expect(await run).toEqual({
      code: 0,
      stdout: 'stopped: deleted 0 expired entries before the signal\n',
      stderr: '',
    });
    await closed;
  });

  it('stops cleanup --loop at once', async () => {
    const server = await startSilentServer();
    const stopping = new AbortController();
    const run = runInProcess(
      ['cleanup', '--loop', ...forever],
      { DATABASE_URL: server.url },
      stopping.signal,
    );
    await server.firstConnection;
    stopping.abort();
    expect(await run).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('stops migrate at once, with exit code 1: the ledger was not migrated', async () => {
    const server = await startSilentServer();
    const stopping = new AbortController();
    const run = runInProcess(
      ['migrate', ...forever],
      { DATABASE_URL: server.url },
      stopping.signal,
    );
    await server.firstConnection;
    stopping.abort();
    expect(await run).toEqual({
      code: 1,
      stdout: '',
      stderr: 'idempotency-ledger migrate: stopped by a signal before it finished\n',
    });
  });
});

describe('a stop signal while release connects', () => {
  it('stops it at once, with exit code 1: a script can tell it from a release', async () => {
    const server = await startSilentServer();
    const stopping = new AbortController();
    const run = runInProcess(
      ['release', '--scope', 's', '--key', 'k', '--connect-timeout-ms', '600000'],
      { DATABASE_URL: server.url },
      stopping.signal,
    );
    await server.firstConnection;
    stopping.abort();
    expect(await run).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'idempotency-ledger release: stopped by a signal before it connected: nothing was released\n',
    });
  });
});

describe('forms of DATABASE_URL', () => {
  it('accepts the Unix socket form postgres://user@/db?host=/directory', async () => {
    const server = await startSilentServer({ unixSocket: true });
    const run = await runInProcess(['cleanup', '--connect-timeout-ms', '200'], {
      DATABASE_URL: server.url,
    });
    // The command went to the socket: it timed out there, it did not refuse the URL.
    expect(server.accepted.length).toBeGreaterThan(0);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('connection timeout');
  });

  it('accepts a percent-encoded password and never shows it', async () => {
    // The server trusts local connections and ignores the password: this checks that the URL
    // is accepted and used, and kept out of the output.
    const url = urlWithPassword('p@ss/w:rd');
    expect(url).toContain(':p%40ss%2Fw%3Ard@');
    const migrate = await runInProcess(['migrate'], { DATABASE_URL: url });
    const applied = readMigrations().map(({ name }) => name);
    expect(migrate).toEqual({ code: 0, stdout: `applied ${applied.join(', ')}\n`, stderr: '' });
    await sql`
      insert into idempotency.ledger (scope, key, expires_at)
      select 's', 'cli-' || g, statement_timestamp() - interval '1 hour'
        from generate_series(1, 3) g`.execute(database.db);
    const cleanup = await runInProcess(['cleanup', '--batch-size', '2'], { DATABASE_URL: url });
    expect(cleanup).toEqual({ code: 0, stdout: 'deleted 3 expired entries\n', stderr: '' });
  });

  it('keeps the password out of an error that quotes it', async () => {
    // Postgres names the database it cannot find; here that name is the password.
    for (const password of ['quoted_secret_7f3a', 'quoted%secret']) {
      const url = urlWithPassword(password, encodeURIComponent(password));
      for (const command of ['migrate', 'cleanup']) {
        const run = await runInProcess([command], { DATABASE_URL: url });
        expect(run.code, `${command} ${password}`).toBe(1);
        expect(run.stderr).toMatch(/database "\*\*\*" does not exist/);
        expect(run.stderr).not.toContain(password);
        expect(run.stderr).not.toContain(encodeURIComponent(password));
      }
    }
  });

  it('reports a refused connection as a failure, exit code 1', async () => {
    // Nothing listens on port 1 of the loopback interface.
    const run = await runInProcess(['cleanup'], {
      DATABASE_URL: 'postgres://app:secret-pw@127.0.0.1:1/ledger',
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot connect to the database: .*ECONNREFUSED/);
  });
});
