// `idempotency-ledger operations list` and `operations release` against a real database with
// operations in progress, and every way their command lines can be wrong.

import { describe, expect, it } from 'vitest';
import { NAME, SCOPE, useOperationsFixture } from './operations-fixture.ts';
import { runInProcess, startSilentServer } from './support.ts';

const ops = useOperationsFixture();

/** A table's lines, each split into its cells (columns are two or more spaces apart). */
function cellsOf(table: string): string[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/ {2,}/));
}

describe('operations list', () => {
  it('shows the operations in progress, oldest first, as an aligned table', async () => {
    await ops.abandon('order-1');
    await ops.hold('order 2');
    const run = await runInProcess(['operations', 'list'], ops.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [header, first, second, ...rest] = cellsOf(run.stdout);
    expect(rest).toEqual([]);
    expect(header).toEqual([
      'SCOPE',
      'KEY',
      'NAME',
      'ATTEMPTS',
      'TOKEN',
      'LEASE LEFT',
      'STEPS',
      'AGE',
    ]);
    expect(first?.slice(0, 7)).toEqual([SCOPE, 'order-1', NAME, '1', '1', 'free', 'create-order']);
    // A key with a space is quoted, so that the columns stay columns.
    expect(second?.slice(0, 5)).toEqual([SCOPE, '"order 2"', NAME, '1', '1']);
    expect(second?.[5]).toMatch(/^[89]m\d\ds$/); // of a 10-minute lease
    expect(second?.[6]).toBe('-');
    expect(first?.[7]).toMatch(/^\d+(ms|s)$/);
    // Aligned: every column starts where its header does.
    const lines = run.stdout.split('\n');
    for (const title of ['KEY', 'NAME', 'LEASE LEFT', 'AGE']) {
      const column = lines[0]?.indexOf(title) ?? -1;
      expect(lines[1]?.[column - 1], title).toBe(' ');
      expect(lines[1]?.[column], title).not.toBe(' ');
      expect(lines[2]?.[column], title).not.toBe(' ');
    }
  });

  it('prints one JSON document with --json, keys and all', async () => {
    await ops.abandon('order-1');
    await ops.hold('order 2');
    const run = await runInProcess(['operations', 'list', '--json'], ops.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const document = JSON.parse(run.stdout);
    expect(document).toMatchObject({
      more: false,
      operations: [
        {
          scope: SCOPE,
          key: 'order-1',
          name: NAME,
          attempts: 1,
          fencingToken: '1',
          leaseRemainingMs: null,
          steps: ['create-order'],
        },
        { key: 'order 2', attempts: 1, fencingToken: '1', steps: [] },
      ],
    });
    const [abandoned, held] = document.operations;
    expect(held.leaseRemainingMs).toBeGreaterThan(500_000);
    expect(held.leaseRemainingMs).toBeLessThanOrEqual(600_000);
    expect(Number.isInteger(abandoned.ageMs) && abandoned.ageMs >= 0).toBe(true);
    expect(new Date(abandoned.createdAt).getTime()).toBeLessThanOrEqual(
      new Date(held.createdAt).getTime(),
    );
  });

  it('shows at most --limit operations, and says when there are more', async () => {
    await ops.abandon('order-1');
    await ops.abandon('order-2');
    const json = await runInProcess(['operations', 'list', '--json', '--limit', '1'], ops.env());
    expect(JSON.parse(json.stdout)).toMatchObject({ more: true, operations: [{ key: 'order-1' }] });
    const table = await runInProcess(['operations', 'list', '--limit', '1'], ops.env());
    expect(cellsOf(table.stdout)).toHaveLength(3);
    expect(table.stdout).toMatch(/\n\(the oldest 1; --limit shows more\)\n$/);
    const all = await runInProcess(['operations', 'list', '--limit', '2', '--json'], ops.env());
    expect(JSON.parse(all.stdout)).toMatchObject({ more: false });
  });

  it('says so when none is in progress', async () => {
    expect(await runInProcess(['operations', 'list'], ops.env())).toEqual({
      code: 0,
      stdout: 'no operations in progress\n',
      stderr: '',
    });
    const json = await runInProcess(['operations', 'list', '--json'], ops.env());
    expect(JSON.parse(json.stdout)).toEqual({ operations: [], more: false });
  });
});

describe('operations release', () => {
  it('takes the lease away and raises the fencing token', async () => {
    await ops.hold('order-3');
    const run = await runInProcess(
      ['operations', 'release', '--scope', SCOPE, '--key', 'order-3'],
      ops.env(),
    );
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^released: /);
    expect(await ops.row('order-3')).toMatchObject({
      state: 'in_progress',
      fencing_token: '2',
      lease_expires_at: null,
    });
    const json = await runInProcess(
      ['operations', 'release', '--json', '--scope', SCOPE, '--key', 'order-3'],
      ops.env(),
    );
    expect(json).toEqual({ code: 0, stdout: '{"released":true}\n', stderr: '' });
    expect((await ops.row('order-3'))?.fencing_token).toBe('3');
  });

  it('exits with code 3 when no such operation is in progress, without naming the key', async () => {
    const key = 'sk_live_never-print-me';
    const run = await runInProcess(
      ['operations', 'release', '--scope', SCOPE, '--key', key],
      ops.env(),
    );
    expect(run).toEqual({
      code: 3,
      stdout: '',
      stderr: `idempotency-ledger operations release: no operation in progress in scope "${SCOPE}" with that key\n`,
    });
    const json = await runInProcess(
      ['operations', 'release', '--scope', SCOPE, '--key', key, '--json'],
      ops.env(),
    );
    expect(json).toMatchObject({ code: 3, stdout: '{"released":false}\n' });
    expect(json.stderr).not.toContain(key);
  });
});

describe('usage errors: exit code 2, named, before a connection is opened', () => {
  const cases: [string[], string][] = [
    [
      ['operations', 'frobnicate'],
      'operations: unknown command "frobnicate" (commands: list, release, resume)',
    ],
    [['operations', '--json'], 'operations: unknown option --json; a command comes first'],
    [['operations', 'list', '--limit', '0'], 'operations list: --limit must be a positive integer'],
    [
      ['operations', 'list', '--limit', 'all'],
      'operations list: --limit must be a positive integer',
    ],
    [['operations', 'list', 'now'], 'operations list: unexpected argument #1'],
    [['operations', 'list', '--key', 'k'], 'operations list: unknown option --key'],
    [['operations', 'release', '--scope', SCOPE], 'operations release: --key is required'],
    [['operations', 'release', '--key', 'k'], 'operations release: --scope is required'],
    [['operations', 'release', '--scope', '', '--key', 'k'], '--scope must not be empty'],
    [['operations', 'release', '--scope', SCOPE, '--key'], '--key needs a value'],
    [['operations', 'resume'], 'operations resume: --module is required'],
    [
      ['operations', 'resume', '--module', 'm.ts', '--interval-ms', '5'],
      '--interval-ms applies only with --loop',
    ],
    [
      ['operations', 'resume', '--module', 'm.ts', '--lease-ms', '50'],
      '--lease-ms must be an integer of at least 100',
    ],
    [
      ['operations', 'resume', '--module', 'm.ts', '--batch-size', '0'],
      '--batch-size must be a positive integer',
    ],
    [['operations', 'resume', '--module', 'm.ts', '--export', ''], '--export must not be empty'],
    [['operations', 'resume', '--module', 'm.ts', '--limit', '5'], 'unknown option --limit'],
  ];
  for (const [argv, message] of cases) {
    it(`refuses: ${argv.join(' ')}`, async () => {
      const server = await startSilentServer();
      const run = await runInProcess(argv, { DATABASE_URL: server.url });
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain('--help" for usage.');
      expect(server.accepted).toHaveLength(0);
    });
  }

  it('prints the list of operations commands to stderr with exit code 2 when none is given', async () => {
    const run = await runInProcess(['operations']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^Usage: idempotency-ledger operations <command>/);
    expect(run.stderr).toMatch(/\n {2}list .*\n {2}release .*\n {2}resume /);
  });

  it("prints a subcommand's usage for --help, help <sub> and help operations <sub>", async () => {
    for (const argv of [
      ['operations', 'release', '--help'],
      ['operations', 'help', 'release'],
      ['help', 'operations', 'release'],
    ]) {
      const run = await runInProcess(argv);
      expect(run, argv.join(' ')).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toMatch(/^Usage: idempotency-ledger operations release --scope S --key K/);
      expect(run.stdout).toContain('3 no operation in progress');
    }
    const unknown = await runInProcess(['help', 'operations', 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "operations frobnicate"');
  });
});
