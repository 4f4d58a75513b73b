// `idempotency-ledger operations resume`: the completer from the command line, with the
// operations of a module file written the way an application writes them (TypeScript, ESM,
// CommonJS), in this process and as the real binary under --loop until SIGTERM.

import { randomBytes } from 'node:crypto';
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { responseEncryption } from '../../src/index.ts';
import {
  CORE_MODULE,
  NAME,
  OPERATIONS_MODULE,
  TYPESCRIPT_MODULE,
  useOperationsFixture,
} from './operations-fixture.ts';
import { runInProcess, startBinary, startSilentServer } from './support.ts';

const ops = useOperationsFixture();
const { fx } = ops;

describe('operations resume', () => {
  it('finishes abandoned operations with a TypeScript module, writing each business row once', async () => {
    await ops.abandon('order-1');
    await ops.abandon('order-2');
    const module = await ops.writeModule('operations.ts', TYPESCRIPT_MODULE);
    // Resolved from the current directory, as a user types it.
    const argv = ['operations', 'resume', '--module', relative(process.cwd(), module)];
    expect(await runInProcess(argv, ops.env())).toEqual({
      code: 0,
      stdout: 'found 2, finished 2, pending 0, skipped 0, failed 0\n',
      stderr: '',
    });
    for (const key of ['order-1', 'order-2']) {
      expect(await fx.countPayments(key)).toBe(1);
      expect(await ops.row(key)).toMatchObject({
        state: 'finished',
        response: { status: 201, chargeId: expect.stringMatching(/^ch_/) },
      });
    }
    expect(await runInProcess(argv, ops.env())).toMatchObject({
      code: 0,
      stdout: 'found 0, finished 0, pending 0, skipped 0, failed 0\n',
    });
  });

  it('takes the operations of a CommonJS module, and only the one --export names', async () => {
    await ops.abandon('order-1');
    const module = await ops.writeModule(
      'operations.cjs',
      `const { defineOperation } = require(${JSON.stringify(OPERATIONS_MODULE)});
module.exports = {
  other: defineOperation({ name: 'other', run: async () => null }),
  createPayment: defineOperation({
    name: ${JSON.stringify(NAME)},
    run: (op) => op.finish(async () => ({ status: 200 })),
  }),
};`,
    );
    const wrongOne = await runInProcess(
      ['operations', 'resume', '--module', module, '--export', 'other'],
      ops.env(),
    );
    expect(wrongOne).toMatchObject({
      code: 0,
      stdout: 'found 0, finished 0, pending 0, skipped 0, failed 0\n',
    });
    const run = await runInProcess(
      ['operations', 'resume', '--module', module, '--export', 'createPayment'],
      ops.env(),
    );
    expect(run).toMatchObject({
      code: 0,
      stdout: 'found 1, finished 1, pending 0, skipped 0, failed 0\n',
    });
    expect(await ops.row('order-1')).toMatchObject({
      state: 'finished',
      response: { status: 200 },
    });
    expect(await fx.countPayments('order-1')).toBe(1);
  });

  it('reads encrypted operations with the encryption the module exports', async () => {
    const material = randomBytes(32);
    const encryption = responseEncryption({ keys: [{ id: 'cli-1', key: material }] });
    await ops.abandon('order-enc', 2500, encryption);
    const withoutKey = await ops.writeModule('operations-no-key.ts', TYPESCRIPT_MODULE);
    const failed = await runInProcess(['operations', 'resume', '--module', withoutKey], ops.env());
    expect(failed).toMatchObject({
      code: 1,
      stdout: 'found 1, finished 0, pending 0, skipped 0, failed 1\n',
    });
    expect(failed.stderr).toContain('is encrypted, and no encryption option was given');
    expect(failed.stderr).not.toContain('order-enc');
    expect(await ops.row('order-enc')).toMatchObject({ state: 'in_progress' });

    const withKey = await ops.writeModule(
      'operations-key.ts',
      `${TYPESCRIPT_MODULE}
import { responseEncryption } from ${JSON.stringify(CORE_MODULE)};
export const encryption = responseEncryption({
  keys: [{ id: 'cli-1', key: Buffer.from(${JSON.stringify(material.toString('hex'))}, 'hex') }],
});
`,
    );
    expect(await runInProcess(['operations', 'resume', '--module', withKey], ops.env())).toEqual({
      code: 0,
      stdout: 'found 1, finished 1, pending 0, skipped 0, failed 0\n',
      stderr: '',
    });
    expect(await fx.countPayments('order-enc')).toBe(1);
    // The resumed attempt stored its response with the module's key too.
    expect(await ops.row('order-enc')).toMatchObject({
      state: 'finished',
      response: { alg: 'A256GCM', kid: 'cli-1' },
    });
  });

  it('reports an operation that fails with its name, not its key, and exit code 1', async () => {
    const key = 'sk_live_never-print-me';
    await ops.abandon(key);
    const module = await ops.writeModule(
      'failing.mjs',
      `import { defineOperation } from ${JSON.stringify(OPERATIONS_MODULE)};
export const createPayment = defineOperation({
  name: ${JSON.stringify(NAME)},
  async run(op) {
    await op.step('create-order', async () => null);
    await op.step('reserve-stock', async () => {
      throw new Error('the stock service refused');
    });
  },
});`,
    );
    const run = await runInProcess(['operations', 'resume', '--module', module], ops.env());
    expect(run).toEqual({
      code: 1,
      stdout: 'found 1, finished 0, pending 0, skipped 0, failed 1\n',
      stderr: `idempotency-ledger operations resume: operation "${NAME}" failed: the stock service refused\n`,
    });
    expect(await ops.row(key)).toMatchObject({ state: 'in_progress', lease_expires_at: null });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses a module it cannot use, in one line and exit code 2', async () => {
    // Through the binary: what Node's own loader reports is what a user sees.
    const modules: [string, string, string][] = [
      [
        'none.mjs',
        'export const answer = 42;\nexport default { also: 1 };',
        'exports no operation made by defineOperation (exports: also, answer, default)',
      ],
      [
        'throws.mjs',
        "throw new Error('PAYMENTS_API_KEY is not set');",
        'cannot be imported: PAYMENTS_API_KEY is not set',
      ],
      ['broken.mjs', 'export const = 1;', "cannot be imported: SyntaxError: Unexpected token '='"],
      [
        'missing-dependency.mjs',
        "import 'no-such-package-anywhere';",
        "cannot be imported: Cannot find package 'no-such-package-anywhere'",
      ],
      ['enum.ts', 'export enum Kind { A }', 'cannot be imported: '],
    ];
    for (const [name, source, message] of modules) {
      const module = await ops.writeModule(name, source);
      const run = await startBinary(['operations', 'resume', '--module', module], ops.env()).exited;
      expect(run.code, name).toBe(2);
      expect(run.stdout, name).toBe('');
      expect(run.stderr, name).toContain(message);
      // One line, or two with the pointer to --help: no stack trace.
      expect(run.stderr.trimEnd().split('\n').length, name).toBeLessThanOrEqual(2);
    }
  });

  it('refuses a file that is not there, an export that is not an operation, one name twice, and two encryptions', async () => {
    const typescript = await ops.writeModule('operations.ts', TYPESCRIPT_MODULE);
    const twoKeys = await ops.writeModule(
      'two-keys.ts',
      `${TYPESCRIPT_MODULE}
import { randomBytes } from 'node:crypto';
import { responseEncryption } from ${JSON.stringify(CORE_MODULE)};
export const one = responseEncryption({ keys: [{ id: 'a', key: randomBytes(32) }] });
export const two = responseEncryption({ keys: [{ id: 'b', key: randomBytes(32) }] });
`,
    );
    const twice = await ops.writeModule(
      'twice.mjs',
      `import { defineOperation } from ${JSON.stringify(OPERATIONS_MODULE)};
export const a = defineOperation({ name: 'same', run: async () => null });
export const b = defineOperation({ name: 'same', run: async () => null });`,
    );
    const refusals: [string[], string][] = [
      [['--module', 'no/such/file.ts'], '--module no/such/file.ts: no such file'],
      [['--module', typescript, '--export', 'nothing'], 'has no export named "nothing"'],
      [
        ['--module', typescript, '--export', 'notAnOperation'],
        '--export notAnOperation is not an operation made by defineOperation',
      ],
      [['--module', twice], 'the exports a and b both define an operation named "same"'],
      [['--module', twoKeys], 'exports 2 different encryptions (responseEncryption())'],
    ];
    for (const [flags, message] of refusals) {
      const run = await runInProcess(['operations', 'resume', ...flags], ops.env());
      expect(run.code, flags.join(' ')).toBe(2);
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain('Run "idempotency-ledger operations resume --help" for usage.');
    }
  });

  it('stops at once on a signal while it connects, with exit code 0 and nothing resumed', async () => {
    await ops.abandon('order-1');
    const module = await ops.writeModule('operations.ts', TYPESCRIPT_MODULE);
    const server = await startSilentServer();
    const stopping = new AbortController();
    const run = runInProcess(
      ['operations', 'resume', '--module', module, '--loop', '--connect-timeout-ms', '600000'],
      { DATABASE_URL: server.url },
      stopping.signal,
    );
    await server.firstConnection;
    stopping.abort('SIGTERM');
    expect(await run).toEqual({ code: 0, stdout: 'stopped before the first pass\n', stderr: '' });
    expect(await ops.row('order-1')).toMatchObject({ state: 'in_progress' });
  });

  it('runs as the binary with --loop, resuming each abandoned operation, until SIGTERM (exit code 0)', async () => {
    await ops.abandon('order-1');
    const module = await ops.writeModule('operations.ts', TYPESCRIPT_MODULE);
    const { child, output, exited } = startBinary(
      ['operations', 'resume', '--module', module, '--loop', '--interval-ms', '50'],
      ops.env(),
    );
    const finished = 'found 1, finished 1, pending 0, skipped 0, failed 0\n';
    await expect
      .poll(() => output.stdout, { timeout: 30_000, message: 'the first pass' })
      .toBe(finished);
    // Abandoned while the loop runs: a later pass finds it.
    await ops.abandon('order-2');
    await expect
      .poll(() => output.stdout, { timeout: 30_000, message: 'a later pass' })
      .toBe(finished.repeat(2));
    child.kill('SIGTERM');
    expect((await exited).code).toBe(0);
    expect(output.stderr).toBe('');
    for (const key of ['order-1', 'order-2']) {
      expect(await fx.countPayments(key)).toBe(1);
      expect(await ops.row(key)).toMatchObject({ state: 'finished' });
    }
  });
});
