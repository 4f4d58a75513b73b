// The real binary in a child process: the version it reads at run time, and SIGTERM while it
// connects to a host that never answers.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startBinary, startSilentServer } from './support.ts';

describe('the idempotency-ledger binary', () => {
  it('prints the version of package.json', async () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    const { code, stdout } = await startBinary(['--version'], {}).exited;
    expect(code).toBe(0);
    expect(stdout).toBe(`${version}\n`);
  });

  // The connect timeout outlasts the test: only SIGTERM can end these runs in time.
  const forever = ['--connect-timeout-ms', '600000'];

  it('stops a one-off cleanup on the first SIGTERM while it connects', async () => {
    const server = await startSilentServer();
    const { child, exited } = startBinary(['cleanup', ...forever], { DATABASE_URL: server.url });
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
    const { child, exited } = startBinary(['migrate', ...forever], { DATABASE_URL: server.url });
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
