// What the command line answers before it touches a database: help, version, and every way its
// arguments or DATABASE_URL can be wrong.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runInProcess, startSilentServer } from './support.ts';

const { version } = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

describe('help and version', () => {
  it('prints the usage for help, --help and -h, exit code 0', async () => {
    for (const flag of ['help', '--help', '-h']) {
      const run = await runInProcess([flag]);
      expect(run, flag).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toContain('Usage: idempotency-ledger <command> [options]');
      expect(run.stdout).toMatch(/migrate .*\n {2}cleanup /);
      expect(run.stdout).toContain('Exit codes: 0 done, 1 failed');
    }
  });

  it("prints a command's usage for <command> --help and help <command>", async () => {
    for (const argv of [
      ['cleanup', '--help'],
      ['cleanup', '-h'],
      ['help', 'cleanup'],
    ]) {
      const run = await runInProcess(argv);
      expect(run, argv.join(' ')).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toMatch(/^Usage: idempotency-ledger cleanup /);
      expect(run.stdout).toContain('--batch-size N');
      expect(run.stdout).toContain('--connect-timeout-ms N');
    }
    const migrate = await runInProcess(['migrate', '--help']);
    expect(migrate.stdout).toMatch(/^Usage: idempotency-ledger migrate \[--schema NAME\]/);
    expect(migrate.stdout).not.toContain('--batch-size');
  });

  it('answers --help even when DATABASE_URL is unset or other flags are wrong', async () => {
    const run = await runInProcess(['cleanup', '--bogus', '--batch-size', 'abc', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: idempotency-ledger cleanup /);
  });

  it('prints the version of package.json for --version and -v', async () => {
    for (const flag of ['--version', '-v']) {
      expect(await runInProcess([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });

  it('prints the usage to stderr with exit code 2 when no command is given', async () => {
    const run = await runInProcess([]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('Usage: idempotency-ledger <command> [options]');
  });
});

describe('usage errors: exit code 2, named, before DATABASE_URL is looked at', () => {
  const cases: [string[], string][] = [
    [
      ['frobnicate'],
      'unknown command "frobnicate" (commands: migrate, cleanup, inspect, release, list, stats, operations, outbox)',
    ],
    [['help', 'frobnicate'], 'unknown command "frobnicate"'],
    [['--schema', 'app', 'migrate'], 'unknown option --schema; a command comes first'],
    [['--version', 'extra'], '--version takes no argument'],
    [['migrate', '--batch-size', '5'], 'migrate: unknown option --batch-size'],
    [['migrate', '--loop'], 'migrate: unknown option --loop'],
    [['migrate', 'extra'], 'migrate: unexpected argument #1'],
    [['cleanup', 'now'], 'cleanup: unexpected argument #1'],
    [['cleanup', '-x'], 'cleanup: unknown option -x'],
    [['cleanup', '--interval-ms', '5'], 'cleanup: --interval-ms applies only with --loop'],
    [['cleanup', '--schema'], 'cleanup: --schema needs a value'],
    [['cleanup', '--schema', '--loop'], 'cleanup: --schema needs a value'],
    [['cleanup', '--loop=yes'], 'cleanup: --loop takes no value'],
    [['cleanup', '--loop', '--loop'], 'cleanup: --loop is given more than once'],
  ];
  for (const [argv, message] of cases) {
    it(`refuses: ${argv.join(' ')}`, async () => {
      // An unusable DATABASE_URL too: the usage error is what the user must hear about.
      const run = await runInProcess(argv, { DATABASE_URL: 'not-a-url' });
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain('--help" for usage.');
      expect(run.stderr).not.toContain('DATABASE_URL');
    });
  }

  it('refuses a bad number, naming the flag', async () => {
    const flags: [string, string][] = [
      ['--batch-size', 'a positive integer, at most 1000000'],
      ['--connect-timeout-ms', 'a positive integer, at most 2147483647'],
    ];
    for (const [flag, rule] of flags) {
      for (const value of ['abc', '0', '-5', '1.5', '1e3', '', '2147483648']) {
        const run = await runInProcess(['cleanup', `${flag}=${value}`]);
        expect(run.code, `${flag}=${value}`).toBe(2);
        expect(run.stderr).toContain(`${flag} must be ${rule} (got ${JSON.stringify(value)})`);
      }
    }
    const pause = await runInProcess(['cleanup', '--pause-ms', '-1']);
    expect(pause.code).toBe(2);
    expect(pause.stderr).toContain('--pause-ms must be a non-negative integer');
    const interval = await runInProcess(['cleanup', '--loop', '--interval-ms', '0']);
    expect(interval.code).toBe(2);
    expect(interval.stderr).toContain('--interval-ms must be a positive integer');
    const migrate = await runInProcess(['migrate', '--connect-timeout-ms', 'soon']);
    expect(migrate.code).toBe(2);
    expect(migrate.stderr).toContain('--connect-timeout-ms must be a positive integer');
  });

  it('opens no connection for a usage error', async () => {
    const server = await startSilentServer();
    const env = { DATABASE_URL: server.url };
    expect((await runInProcess(['cleanup', '--batch-size', 'abc'], env)).code).toBe(2);
    expect((await runInProcess(['migrate', '--batch-size', '5'], env)).code).toBe(2);
    expect((await runInProcess(['migrate', '--schema', ''], env)).code).toBe(2);
    expect(server.accepted).toHaveLength(0);
  });
});

describe('DATABASE_URL', () => {
  it('is required: exit code 2 and a clear message', async () => {
    for (const env of [{}, { DATABASE_URL: '' }, { DATABASE_URL: '  ' }]) {
      for (const command of ['migrate', 'cleanup']) {
        const run = await runInProcess([command], env);
        expect(run.code).toBe(2);
        expect(run.stderr).toBe(
          `idempotency-ledger ${command}: DATABASE_URL is not set: give the connection string, ` +
            'e.g. postgres://user:password@host:5432/database\n',
        );
      }
    }
  });

  it('must be a postgres:// URL', async () => {
    for (const url of ['not-a-url', 'db.example.com:5432/app', 'mysql://u:pw@db/app']) {
      const run = await runInProcess(['cleanup'], { DATABASE_URL: url });
      expect(run.code, url).toBe(2);
      expect(run.stderr).toContain('DATABASE_URL is not a postgres:// URL');
      expect(run.stderr).not.toContain(url);
    }
  });

  it('that cannot be parsed is refused without showing its password', async () => {
    for (const url of [
      'postgres://app:s3cret-pw@db.example.com:99999/app',
      'postgresql://app:s3cret-pw/x@db.example.com/app',
    ]) {
      const run = await runInProcess(['migrate'], { DATABASE_URL: url });
      expect(run.code, url).toBe(2);
      expect(run.stderr).toContain('DATABASE_URL cannot be parsed');
      expect(run.stderr).toContain('@ as %40');
      expect(run.stderr).not.toContain('s3cret');
    }
  });
});

describe('the README', () => {
  it('shows the usage that --help prints', async () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const shown = /\$ npx idempotency-ledger --help\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(shown).toBe((await runInProcess(['--help'])).stdout);
  });
});
