// Runs the command line in-process, and stands up servers that accept connections and never
// answer, the way a firewalled or hung database host does.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { runCli } from '../../src/cli/run-cli.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
/** Children a failed test did not see exit. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/**
 * Starts the real binary (`src/cli/main.ts`) in a child process with `env` added to this one's:
 * `output` fills as it writes; `exited` resolves with its exit code, signal and whole output. A
 * child still running when its test ends is SIGKILLed.
 */
export function startBinary(argv: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [cli, ...argv], {
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
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    ...output,
  }));
  return { child, output, exited };
}

/** Runs `idempotency-ledger <argv>` in this process with exactly `env`, collecting its output. */
export async function runInProcess(
  argv: string[],
  env: Record<string, string | undefined> = {},
  signal: AbortSignal = new AbortController().signal,
): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    env,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    signal,
  });
  return { code, stdout, stderr };
}

export interface SilentServer {
  /** A connection string to it; the password is `secret-pw`. */
  url: string;
  /** Connections accepted so far. */
  accepted: net.Socket[];
  /** Resolves with the first connection accepted. */
  firstConnection: Promise<net.Socket>;
}

const servers: { server: net.Server; accepted: net.Socket[]; directory?: string }[] = [];
afterEach(async () => {
  for (const { server, accepted, directory } of servers.splice(0)) {
    for (const socket of accepted) socket.destroy();
    server.close();
    await once(server, 'close');
    if (directory) await rm(directory, { recursive: true, force: true });
  }
});

/**
 * A server that accepts TCP connections on 127.0.0.1, or on a Unix socket in a directory of its
 * own with `unixSocket`, and never sends a byte. Closed after each test.
 */
export async function startSilentServer(
  options: { unixSocket?: boolean } = {},
): Promise<SilentServer> {
  const accepted: net.Socket[] = [];
  let connected: (socket: net.Socket) => void = () => {};
  const firstConnection = new Promise<net.Socket>((resolve) => {
    connected = resolve;
  });
  const server = net.createServer((socket) => {
    accepted.push(socket);
    connected(socket);
  });
  const entry: (typeof servers)[number] = { server, accepted };
  servers.push(entry);
  if (options.unixSocket) {
    // pg connects to <host>/.s.PGSQL.<port>, as libpq does.
    entry.directory = await mkdtemp(join(tmpdir(), 'idempotency-cli-'));
    server.listen(join(entry.directory, '.s.PGSQL.5433'));
    await once(server, 'listening');
    const url = `postgres://app:secret-pw@/ledger?host=${entry.directory}&port=5433`;
    return { url, accepted, firstConnection };
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return { url: `postgres://app:secret-pw@127.0.0.1:${port}/ledger`, accepted, firstConnection };
}
