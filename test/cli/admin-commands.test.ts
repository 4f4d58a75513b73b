// `idempotency-ledger inspect`, `release`, `list` and `stats` against a seeded ledger: their
// tables and JSON, their exit codes, what release changes and what it leaves alone, and every way
// their command lines can be wrong.

import { setTimeout } from 'node:timers/promises';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run-cli.ts';
import { startProgress } from '../../src/cli/shared/progress.ts';
import { withIdempotency } from '../../src/index.ts';
import {
  ABANDONED,
  EXPIRED_KEY,
  FINISHED,
  HELD,
  LIVE,
  OP_NAME,
  OPS,
  SHOP1,
  SHOP2,
  useAdminFixture,
  WILD,
} from '../support/admin-fixture.ts';
import { createPayment } from '../support/ledger-fixture.ts';
import { runInProcess, startBinary, startSilentServer } from './support.ts';

const admin = useAdminFixture();

/** A table's lines, each split into its cells (columns are two or more spaces apart). */
function cellsOf(table: string): string[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/ {2,}/));
}

/** The field lines of `inspect` as label -> value. */
function fieldsOf(output: string): Map<string, string> {
  return new Map(
    output
      .trimEnd()
      .split('\n')
      .filter((line) => !line.startsWith('  '))
      .map((line) => {
        const [label = '', ...value] = line.split(/ {2,}/);
        return [label, value.join('  ')];
      }),
  );
}

describe('inspect', () => {
  it('shows a live entry: state, expiry, fingerprint and response size, not the response', async () => {
    const run = await runInProcess(['inspect', '--scope', SHOP1, '--key', 'k-1'], admin.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const fields = fieldsOf(run.stdout);
    expect([...fields.keys()]).toEqual([
      'scope',
      'key',
      'entry',
      'created',
      'expires',
      'fingerprint',
      'response',
      'operation',
    ]);
    expect(fields.get('entry')).toMatch(/^live, expires in 23h5\dm$/);
    expect(fields.get('fingerprint')).toMatch(/^[0-9a-f]{64}$/);
    expect(fields.get('response')).toMatch(/^\d+ bytes$/);
    expect(fields.get('operation')).toBe('none');
    expect(run.stdout).not.toContain('paymentId');

    const json = await runInProcess(
      ['inspect', '--scope', SHOP1, '--key', 'k-1', '--json'],
      admin.env(),
    );
    const document = JSON.parse(json.stdout);
    expect(document).toMatchObject({
      scope: SHOP1,
      key: 'k-1',
      entry: { state: 'live', fingerprint: fields.get('fingerprint') },
      operation: null,
    });
    expect(`${document.entry.responseBytes} bytes`).toBe(fields.get('response'));
    expect(Number.isInteger(document.entry.expiresInMs)).toBe(true);
  });

  it('shows an expired entry, and an absent key as an answer (exit code 0)', async () => {
    const expired = await runInProcess(
      ['inspect', '--scope', SHOP1, '--key', EXPIRED_KEY],
      admin.env(),
    );
    expect(fieldsOf(expired.stdout).get('entry')).toMatch(/^expired 1h00m ago$/);
    expect(fieldsOf(expired.stdout).get('fingerprint')).toBe('none (no request)');
    const absent = await runInProcess(['inspect', '--scope', SHOP1, '--key', 'k 9'], admin.env());
    expect(absent).toEqual({
      code: 0,
      stdout: 'scope      shop:1:pay\nkey        "k 9"\nentry      absent\noperation  none\n',
      stderr: '',
    });
  });

  it("shows an operation's state, lease and steps with their sizes", async () => {
    const run = await runInProcess(['inspect', '--scope', OPS, '--key', ABANDONED], admin.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const fields = fieldsOf(run.stdout);
    expect(fields.get('entry')).toBe('absent');
    expect(fields.get('operation')).toBe(`${OP_NAME}, in progress`);
    expect(fields.get('attempts')).toBe('1');
    expect(fields.get('fencing token')).toBe('1');
    expect(fields.get('lease left')).toBe('free');
    expect(fields.get('steps')).toBe('1');
    const steps = cellsOf(run.stdout.slice(run.stdout.indexOf('  STEP')));
    expect(steps[0]).toEqual(['', 'STEP', 'RESULT', 'TOKEN', 'RECORDED AT']);
    expect(steps[1]?.slice(0, 4)).toEqual(['', 'create-order', '15 bytes', '1']);
    expect(run.stdout).not.toContain('o-1');

    const held = await runInProcess(
      ['inspect', '--scope', OPS, '--key', HELD, '--json'],
      admin.env(),
    );
    const { operation } = JSON.parse(held.stdout);
    expect(operation).toMatchObject({ state: 'in_progress', steps: [], attempts: 1 });
    expect(operation.leaseRemainingMs).toBeGreaterThan(500_000);
    expect(operation.leaseRemainingMs).toBeLessThanOrEqual(600_000);
  });
});

describe('release', () => {
  /** `release` of `key`: an operation's in OPS, an entry's in SHOP1. */
  const release = (key: string, ...extra: string[]) => {
    const scope = [HELD, ABANDONED, FINISHED].includes(key) ? OPS : SHOP1;
    return runInProcess(['release', '--scope', scope, '--key', key, ...extra], admin.env());
  };

  it('refuses an operation an attempt holds, changing nothing, without naming the key', async () => {
    const before = await admin.counts();
    const row = await admin.operationRow(HELD);
    const run = await release(HELD);
    expect(run.code).toBe(4);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      /^idempotency-ledger release: refused: an attempt holds the operation's lease for 9m5\ds more; --force releases it all the same\n$/,
    );
    expect(run.stderr).not.toContain(HELD);
    const json = await release(HELD, '--json');
    expect(json.code).toBe(4);
    expect(JSON.parse(json.stdout)).toMatchObject({ outcome: 'refused', reason: 'live_lease' });
    expect(await admin.counts()).toEqual(before);
    expect(await admin.operationRow(HELD)).toEqual(row);
  });

  it('releases a held operation with --force: token raised, lease cleared, still in progress', async () => {
    const before = await admin.counts();
    const run = await release(HELD, '--force');
    expect(run).toEqual({
      code: 0,
      stdout:
        "released: took its operation's lease away from the attempt holding it, which can " +
        'commit nothing more: the next retry or completer pass resumes it from its last ' +
        'recorded step\n',
      stderr: '',
    });
    expect(await admin.operationRow(HELD)).toMatchObject({
      state: 'in_progress',
      fencing_token: '2',
      lease_expires_at: null,
      expired: false,
    });
    expect(await admin.counts()).toEqual(before);
    expect((await admin.operationRow(ABANDONED))?.fencing_token).toBe('1');
    // Released again: no lease to take, but the token still rises, fencing off any holder.
    const again = await release(HELD, '--json');
    expect(again.code).toBe(0);
    expect((await admin.operationRow(HELD))?.fencing_token).toBe('3');
  });

  it('releases an abandoned operation, keeping its steps, and changes nothing else', async () => {
    const before = await admin.counts();
    const run = await release(ABANDONED, '--json');
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(run.stdout)).toEqual({
      outcome: 'released',
      entryDeleted: false,
      entryCreatedAt: null,
      operationReleased: { leaseWasLive: false },
    });
    expect(await admin.counts()).toEqual(before);
    expect(await admin.operationRow(ABANDONED)).toMatchObject({
      state: 'in_progress',
      fencing_token: '2',
      expired: false,
    });
  });

  it('leaves a finished operation alone: it replays until it expires', async () => {
    const before = await admin.counts();
    const row = await admin.operationRow(FINISHED);
    const run = await release(FINISHED, '--json');
    expect(run.code).toBe(3);
    expect(JSON.parse(run.stdout)).toEqual({ outcome: 'nothing_to_release' });
    expect(await admin.counts()).toEqual(before);
    expect(await admin.operationRow(FINISHED)).toEqual(row);
  });

  it('deletes one entry and leaves every other row alone', async () => {
    const before = await admin.counts();
    const shown = await runInProcess(
      ['inspect', '--scope', SHOP1, '--key', 'k-2', '--json'],
      admin.env(),
    );
    const { createdAt } = JSON.parse(shown.stdout).entry;
    const run = await release('k-2');
    expect(run).toEqual({
      code: 0,
      stdout: `released: deleted its ledger entry (created ${createdAt}): the next request with the key executes afresh\n`,
      stderr: '',
    });
    expect(await admin.counts()).toEqual({ ...before, ledger: (before?.ledger ?? 0) - 1 });
    expect(await admin.fx.countEntries('k-2')).toBe(0);
    expect(await admin.fx.countEntries('k-1')).toBe(3);
  });

  it('exits with code 3 when there is nothing to release, without naming the key', async () => {
    const key = 'sk_live_never-print-me';
    const run = await release(key);
    expect(run).toEqual({
      code: 3,
      stdout: '',
      stderr: `idempotency-ledger release: nothing to release in scope "${SHOP1}" with that key\n`,
    });
    const json = await release(key, '--json');
    expect(json).toMatchObject({ code: 3, stdout: '{"outcome":"nothing_to_release"}\n' });
    expect(json.stderr).not.toContain(key);
  });
});

describe('list', () => {
  it('lists entries in key order as a table, expired ones marked', async () => {
    const run = await runInProcess(['list'], admin.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = cellsOf(run.stdout);
    expect(header).toEqual(['SCOPE', 'KEY', 'STATE', 'EXPIRES IN', 'CREATED', 'RESPONSE']);
    expect(rows.map((row) => row.slice(0, 3))).toEqual([
      [SHOP1, '"k 3"', 'live'],
      [SHOP1, 'k-1', 'live'],
      [SHOP1, 'k-2', 'live'],
      [SHOP1, EXPIRED_KEY, 'expired'],
      [SHOP2, 'k-1', 'live'],
      [WILD, 'k-1', 'live'],
    ]);
    expect(rows[3]?.[3]).toBe('-1h00m');
    expect(rows[0]?.[3]).toMatch(/^23h5\dm$/);
  });

  it('filters by a literal scope prefix and by state, and says when there are more', async () => {
    const wild = await runInProcess(['list', '--scope-prefix', 'shop_', '--json'], admin.env());
    expect(JSON.parse(wild.stdout)).toMatchObject({ more: false, entries: [{ scope: WILD }] });
    expect(JSON.parse(wild.stdout).entries).toHaveLength(1);
    const expired = await runInProcess(['list', '--expired', '--json'], admin.env());
    expect(JSON.parse(expired.stdout).entries.map((entry: { key: string }) => entry.key)).toEqual([
      EXPIRED_KEY,
    ]);
    const live = await runInProcess(
      ['list', '--live', '--scope-prefix', 'shop:1', '--json'],
      admin.env(),
    );
    expect(JSON.parse(live.stdout).entries).toHaveLength(3);
    const limited = await runInProcess(['list', '--limit', '2'], admin.env());
    expect(cellsOf(limited.stdout)).toHaveLength(4);
    expect(limited.stdout).toMatch(/\n\(the first 2; --limit shows more\)\n$/);
    const none = await runInProcess(['list', '--scope-prefix', 'nope'], admin.env());
    expect(none).toEqual({ code: 0, stdout: 'no entries\n', stderr: '' });
  });

  it('lists stuck operations with --stuck: no lease, or attempts from --min-attempts', async () => {
    const run = await runInProcess(['list', '--stuck'], admin.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = cellsOf(run.stdout);
    expect(header).toEqual([
      'SCOPE',
      'KEY',
      'NAME',
      'ATTEMPTS',
      'TOKEN',
      'LEASE LEFT',
      'WHY',
      'AGE',
    ]);
    expect(rows.map((row) => row.slice(0, 7))).toEqual([
      [OPS, ABANDONED, OP_NAME, '1', '1', 'free', 'no_lease'],
    ]);
    const json = await runInProcess(
      ['list', '--stuck', '--min-attempts', '1', '--json'],
      admin.env(),
    );
    const document = JSON.parse(json.stdout);
    expect(document).toMatchObject({
      more: false,
      operations: [
        { key: ABANDONED, reasons: ['no_lease', 'attempts'], leaseRemainingMs: null },
        { key: HELD, reasons: ['attempts'] },
      ],
    });
    expect(document.operations[1].leaseRemainingMs).toBeGreaterThan(500_000);
  });
});

describe('stats', () => {
  it('counts entries, scopes, backlog and operations', async () => {
    const run = await runInProcess(['stats', '--top', '2'], admin.env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [summary, byEntries, byBytes] = run.stdout.split('\n\n');
    const fields = fieldsOf(summary ?? '');
    expect(fields.get('entries')).toBe('6 (live 5, expired 1)');
    expect(fields.get('cleanup backlog')).toBe('1 expired rows');
    expect(fields.get('on disk')).toMatch(/^ledger \d+ kB \(indexes \d+ kB\), operations \d+ kB$/);
    expect(fields.get('oldest entry')).toMatch(/^\d+m?s old \(\d{4}-/);
    expect(fields.get('operations')).toMatch(/^2 in progress, the oldest \d+m?s old; 0 expired$/);
    expect(cellsOf(byEntries ?? '').map((row) => row.slice(0, 2))).toEqual([
      ['TOP SCOPES BY ENTRIES', 'ENTRIES'],
      [SHOP1, '4'],
      [SHOP2, '1'],
    ]);
    expect(cellsOf(byBytes ?? '')[1]?.[0]).toBe(SHOP1);

    const json = JSON.parse((await runInProcess(['stats', '--json'], admin.env())).stdout);
    expect(json).toMatchObject({
      exact: true,
      entries: { live: LIVE.length, expired: 1, total: LIVE.length + 1 },
      operations: { inProgress: 2, expired: 0 },
    });
    expect(json.topScopesByEntries).toHaveLength(3);
    expect(json.bytes.ledger).toBeGreaterThan(json.bytes.ledgerIndexes);
  });

  it('estimates from the planner with --estimate, the backlog still exact', async () => {
    await sql`vacuum analyze idempotency.ledger`.execute(admin.fx.db);
    const json = JSON.parse(
      (await runInProcess(['stats', '--estimate', '--json'], admin.env())).stdout,
    );
    expect(json).toMatchObject({
      exact: false,
      entries: { total: 6, expired: 1 },
      topScopesByEntries: null,
      oldestEntry: null,
    });
    const human = await runInProcess(['stats', '--estimate'], admin.env());
    expect(fieldsOf(human.stdout).get('entries')).toBe('~6 (live ~5, expired 1), estimated');
  });

  it('shows its stage on a terminal, and clears the line before the result', async () => {
    let stderr = '';
    let stdout = '';
    const code = await runCli(['stats'], {
      env: admin.env(),
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
      signal: new AbortController().signal,
      stderrIsTTY: true,
    });
    expect(code).toBe(0);
    expect(stderr).toContain('\r\x1b[Kstats: counting entries... ');
    expect(stderr.endsWith('\r\x1b[K')).toBe(true);
    expect(stderr).not.toContain('\n');
    expect(stdout).toMatch(/^entries {10}6 /);
  });

  it('shows cleanup draining a backlog on a terminal, the count on standard output', async () => {
    let stderr = '';
    let stdout = '';
    const code = await runCli(['cleanup', '--batch-size', '1'], {
      env: admin.env(),
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
      signal: new AbortController().signal,
      stderrIsTTY: true,
    });
    expect(code).toBe(0);
    expect(stderr.startsWith('\r\x1b[Kcleanup: deleting expired entries... ')).toBe(true);
    expect(stderr.endsWith('\r\x1b[K')).toBe(true);
    expect(stdout).toBe('deleted 1 expired entries\n');
  });

  it('draws nothing before its first stage, however long that takes to come', async () => {
    for (const stderrIsTTY of [true, false]) {
      let stderr = '';
      const progress = startProgress({ stderr: (text) => (stderr += text), stderrIsTTY }, 'stats', {
        plainEveryMs: 1,
      });
      // Longer than a terminal's redraw (250 ms) and than many plain intervals.
      await setTimeout(300);
      progress.done();
      expect(stderr).toBe('');
    }
  });

  it('writes plain lines, without control characters, where standard error is no terminal', () => {
    let stderr = '';
    const progress = startProgress(
      { stderr: (text) => (stderr += text), stderrIsTTY: false },
      'stats',
      { plainEveryMs: 0 },
    );
    progress.stage('counting entries');
    progress.done();
    expect(stderr).toMatch(/^stats: counting entries \(\d+ms so far\)\n$/);
  });

  it('runs from the binary, whose standard error is a pipe: nothing but the result', async () => {
    const { exited } = startBinary(['stats', '--json'], admin.env());
    const { code, stdout, stderr } = await exited;
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(stdout).entries.total).toBe(LIVE.length + 1);
    const refused = await startBinary(['release', '--scope', OPS, '--key', HELD], admin.env())
      .exited;
    expect(refused.code).toBe(4);
  });
});

describe('usage errors: exit code 2, named, before a connection is opened', () => {
  const cases: [string[], string][] = [
    [['inspect', '--scope', SHOP1], 'inspect: --key is required'],
    [['inspect', '--key', 'k'], 'inspect: --scope is required'],
    [['inspect', '--scope', SHOP1, '--key', ''], '--key must not be empty'],
    [['release', '--key', 'k'], 'release: --scope is required'],
    [['release', '--scope', SHOP1, '--key'], '--key needs a value'],
    [
      ['release', '--scope', SHOP1, '--key', '-abc'],
      'release: --key needs a value (one that starts with "-" is given as --key=VALUE)',
    ],
    [['release', '--scope', SHOP1, '--key', 'k', '--force=yes'], '--force takes no value'],
    [['list', '--limit', '0'], 'list: --limit must be a positive integer'],
    [['list', '--limit', 'all'], 'list: --limit must be a positive integer'],
    [['list', '--limit', '100001'], 'at most 100000'],
    [['list', '--live', '--expired'], '--live and --expired exclude each other'],
    [['list', '--stuck', '--expired'], '--stuck lists operations'],
    [['list', '--min-attempts', '3'], '--min-attempts applies only with --stuck'],
    [
      ['list', 'everything'],
      'list: unexpected argument #1 (not shown: it may be a key; every value follows its flag)',
    ],
    [['stats', '--top', '-1'], 'stats: --top must be a non-negative integer, at most 1000'],
    [['stats', '--top', '1001'], '(got "1001")'],
    [['stats', '--key', 'k'], 'stats: unknown option --key'],
  ];
  for (const [argv, message] of cases) {
    it(`refuses: ${argv.join(' ')}`, async () => {
      const server = await startSilentServer();
      const before = await admin.counts();
      const run = await runInProcess(argv, { DATABASE_URL: server.url });
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain('--help" for usage.');
      expect(server.accepted).toHaveLength(0);
      expect(await admin.counts()).toEqual(before);
    });
  }

  it('never echoes a stray argument: it may be a key given without --key', async () => {
    const secret = 'sk_live_never-print-me';
    const run = await runInProcess(['release', '--scope', SHOP1, '--force', secret], admin.env());
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('release: unexpected argument #4 (not shown: it may be a key;');
    expect(run.stderr).not.toContain('never-print-me');
    const second = await runInProcess(['inspect', '--scope', SHOP1, 'x', secret], admin.env());
    expect(second.stderr).toContain('inspect: unexpected argument #3');
    expect(second.stderr).not.toContain('never-print-me');
  });

  it('takes a key that starts with "-" as --key=-abc, and says in --help that keys show in ps', async () => {
    await withIdempotency(admin.fx.db, { scope: SHOP1, key: '-abc' }, createPayment(SHOP1, '-abc'));
    const run = await runInProcess(
      ['release', '--scope', SHOP1, '--key=-abc', '--json'],
      admin.env(),
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ outcome: 'released', entryDeleted: true });
    expect(await admin.fx.countEntries('-abc', SHOP1)).toBe(0);
    for (const command of ['inspect', 'release']) {
      const usage = await runInProcess(['help', command]);
      expect(usage.stdout).toContain('A key that starts with "-" is given as --key=-abc');
      expect(usage.stdout).toContain("shows in the process list (ps) and in the shell's history");
    }
  });

  it('lists the new commands and exit code 4 in --help', async () => {
    const run = await runInProcess(['--help']);
    expect(run.stdout).toMatch(/\n {2}inspect .*\n {2}release .*\n {2}list .*\n {2}stats /);
    expect(run.stdout).toContain('4 refused, nothing changed (release)');
    const usage = await runInProcess(['help', 'release']);
    expect(usage.stdout).toMatch(
      /^Usage: idempotency-ledger release --scope S --key K \[--force\]/,
    );
  });
});
