import { type ChildProcess, fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const serverMain = fileURLToPath(new URL('./server-main.ts', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** A payment service running in a child process. */
export interface ServerProcess {
  port: number;
  /** SIGKILL: a real crash, with requests and transactions in flight. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it takes too long. */
  stop(): Promise<void>;
  /** True if the process exited without kill() or stop(). */
  crashed(): boolean;
}

/** Starts server-main.ts on `port` (0: any free port) and resolves once it listens. */
export async function startServerProcess(
  databaseUrl: string,
  port: number,
  onLog: (line: string) => void,
): Promise<ServerProcess> {
  const child = fork(serverMain, [], {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port) },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let expectedExit = false;
  // Kept to explain a failed start.
  const recent: string[] = [];
  if (child.stderr) {
    createInterface({ input: child.stderr }).on('line', (line) => {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      onLog(line);
    });
  }

  const listeningPort = await waitForPort(child, recent);
  const end = async (signal: NodeJS.Signals) => {
    expectedExit = true;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    port: listeningPort,
    kill: () => end('SIGKILL'),
    async stop() {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await end('SIGTERM');
      clearTimeout(timer);
    },
    crashed: () => !expectedExit && (child.exitCode !== null || child.signalCode !== null),
  };
}

function waitForPort(child: ChildProcess, stderr: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the payment service did not start within ${STARTUP_TIMEOUT_MS} ms`));
    }, STARTUP_TIMEOUT_MS);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      // Let the last stderr lines arrive before quoting them.
      setImmediate(() =>
        reject(
          new Error(
            `the payment service exited during startup (code ${code}):\n${stderr.join('\n')}`,
          ),
        ),
      );
    };
    child.once('exit', onExit);
    if (!child.stdout) throw new Error('no stdout pipe');
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(Number(match[1]));
    });
  });
}
