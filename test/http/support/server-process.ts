/**
 * Runs a server that follows the example contract (examples/http/) as a child process: started
 * with `node <file>`, ready once it prints `listening on http://127.0.0.1:<port>`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/** How long a server may take to migrate its database and listen. */
const STARTUP_TIMEOUT_MS = 30_000;
/** How long a server may take to exit after SIGTERM before the test calls it hung. */
const STOP_TIMEOUT_MS = 15_000;
/** Output lines kept to explain a failure. */
const KEPT_LINES = 40;

export interface ServerProcess {
  baseUrl: string;
  /** SIGKILL, a crash: resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM: resolves with the exit code once it is gone (null when a signal ended it). */
  stop(): Promise<number | null>;
  /** Whether the process is still running. */
  readonly running: boolean;
  /** Its last lines of output, stderr and stdout mixed. */
  output(): string;
}

/**
 * Starts `node <file>` with `env` added to the environment and resolves once it listens. Fails
 * (and kills it) when it exits first or takes longer than 30 s. `signal` kills it (SIGKILL).
 *
 * @example
 * ```ts
 * const server = await startServerProcess('examples/http/express/server.ts', { DATABASE_URL, PORT: '0' });
 * await fetch(`${server.baseUrl}/payments/1`);
 * expect(await server.stop()).toBe(0);
 * ```
 */
export async function startServerProcess(
  file: string,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Aborting kills it whenever it happens, even before it listens (or before it is spawned).
    signal,
    killSignal: 'SIGKILL',
  });
  // An abort is reported as an 'error' too; the exit says all there is to say.
  child.on('error', () => {});
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > KEPT_LINES) lines.shift();
  };
  createInterface({ input: child.stderr }).on('line', keep);
  const stdout = createInterface({ input: child.stdout });
  const output = () => lines.join('\n');
  const running = () => child.exitCode === null && child.signalCode === null;

  const baseUrl = await new Promise<string>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      if (running()) child.kill('SIGKILL');
      // The last lines of stderr may still be on their way.
      setImmediate(() => reject(new Error(`${file} ${why}; its output:\n${output()}`)));
    };
    const timer = setTimeout(
      () => fail(`did not listen within ${STARTUP_TIMEOUT_MS} ms`),
      STARTUP_TIMEOUT_MS,
    );
    void exited.then(([code, signal]) => fail(`exited during startup (${code ?? signal})`));
    child.once('error', (error) => fail(`could not start (${error.message})`));
    stdout.on('line', (line) => {
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (!match) return keep(line);
      clearTimeout(timer);
      resolve(match[1] as string);
    });
  });

  const end = async (signal: NodeJS.Signals) => {
    if (running()) child.kill(signal);
    const [code] = await exited;
    return code;
  };
  return {
    baseUrl,
    kill: async () => {
      await end('SIGKILL');
    },
    stop: async () => {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      try {
        return await end('SIGTERM');
      } finally {
        clearTimeout(timer);
      }
    },
    get running() {
      return running();
    },
    output,
  };
}
