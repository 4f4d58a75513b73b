// The real binary in a child process: the version it reads at run time, and SIGTERM while it
// connects to a host that never answers.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { startSilentServer } from './support.ts';

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** Children a failed test did not see exit. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/** Starts the binary and collects its output; `exited` resolves with its exit code. */
function start(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk) => {
    output.stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output.stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal, ...output }));
  return { child, exited };
}

describe('the idempotency-ledger binary', () => {
  it('prints the version of package.json', async () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    const { stdout } = await promisify(execFile)(process.execPath, [cli, '--version']);
    expect(stdout).toBe(`${version}\n`);
  });

  // The connect timeout outlasts the test: only SIGTERM can end these runs in time.
  const forever = ['--connect-timeout-ms', '600000'];

  it('stops a one-off cleanup on the first SIGTERM while it connects', async () => {
    const server = await startSilentServer();
    const { child, exited } = start(['cleanup', ...forever], { DATABASE_URL: server.url });
    await server.firstConnection;
    child.kill('SIGTERM');
    expect(await exited).toEqual({
      code: 0,
      signal: null,
      stdout: 'stopped: deleted 0 expired entries before the signal\n',
      stderr: '',
    });
  });

  it('stops migrate on the first SIGTERM while it connects, with exit code 1', async () => {
    const server = await startSilentServer();
    const { child, exited } = start(['migrate', ...forever], { DATABASE_URL: server.url });
    await server.firstConnection;
    child.kill('SIGTERM');
    expect(await exited).toEqual({
      code: 1,
      signal: null,
      stdout: '',
      stderr: 'idempotency-ledger migrate: stopped by a signal before it finished\n',
    });
  });
});
