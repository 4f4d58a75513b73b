// Runs the command line in-process, and stands up servers that accept connections and never
// answer, the way a firewalled or hung database host does.

import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { runCli } from '../../src/cli/run-cli.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
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
