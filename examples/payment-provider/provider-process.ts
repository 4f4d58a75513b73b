/** The provider in a child process (main.ts), for tests that kill it. */
import { fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { FaultPlanInput } from './fault-plan.ts';

const providerMain = fileURLToPath(new URL('./main.ts', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** A provider running in a child process. */
export interface ProviderProcess {
  url: string;
  port: number;
  pid: number;
  /** SIGKILL: a crash, with requests in flight. Resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s); resolves with the exit code (`null` if killed by a signal). */
  stop(): Promise<number | null>;
  /** The child's stderr so far, to explain a failure. */
  output(): string;
}

export interface ProviderProcessOptions {
  /** 0 (the default) picks a free port; pass the old port to restart in place. */
  port?: number;
  stateFile?: string;
  faultPlan?: FaultPlanInput;
}

/**
 * Starts main.ts and resolves once it listens.
 *
 * @example
 * ```ts
 * const provider = await startProviderProcess({ stateFile });
 * await provider.kill();
 * const again = await startProviderProcess({ stateFile, port: provider.port });
 * ```
 */
export async function startProviderProcess(
  options: ProviderProcessOptions = {},
): Promise<ProviderProcess> {
  const child = fork(providerMain, [], {
    env: {
      ...process.env,
      PORT: String(options.port ?? 0),
      STATE_FILE: options.stateFile ?? '',
      FAULT_PLAN: options.faultPlan ? JSON.stringify(options.faultPlan) : '',
    },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the payment provider did not start within ${STARTUP_TIMEOUT_MS} ms`));
    }, STARTUP_TIMEOUT_MS);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      // setImmediate: let the last of stderr arrive before quoting it.
      setImmediate(() =>
        reject(new Error(`the payment provider exited at startup (code ${code}):\n${stderr}`)),
      );
    };
    child.once('exit', onExit);
    if (!child.stdout) throw new Error('no stdout pipe');
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(match[1] as string);
    });
  });

  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    url,
    port: Number(new URL(url).port),
    pid: child.pid as number,
    async kill() {
      if (running()) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (running()) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    output: () => stderr,
  };
}
