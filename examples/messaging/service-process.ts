import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** One of the example's services (the relay, the payments consumer) in a child process. */
export interface ServiceProcess {
  /** SIGKILL: a real crash, with messages in flight. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it takes too long. */
  stop(): Promise<void>;
}

/** Starts `file` (next to this one) with `env`, and resolves once it printed `ready`. */
export async function startService(
  file: string,
  env: Record<string, string>,
  onLog: (line: string) => void,
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(file, import.meta.url))], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  createInterface({ input: child.stderr }).on('line', onLog);
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start`)), READY_TIMEOUT_MS);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited (${signal ?? code}) before it was ready`));
    });
  });
  await ready;
  const end = async (signal: NodeJS.Signals) => {
    if (alive(child)) child.kill(signal);
    await exited;
  };
  return {
    kill: () => end('SIGKILL'),
    async stop() {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await end('SIGTERM');
      clearTimeout(timer);
    },
  };
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}
