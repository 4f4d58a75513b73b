import { type ChildProcess, spawn } from 'node:child_process';

const running = new Set<ChildProcess>();

export interface RunOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Exit codes that are not a failure. Default: 0 only. */
  allowedExitCodes?: number[];
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A command that exited with a code it should not have, with everything it printed. */
export class CommandFailedError extends Error {
  constructor(command: string, result: RunResult) {
    super(
      `\`${command}\` exited with code ${result.exitCode}\n` +
        `--- stdout ---\n${result.stdout.trimEnd()}\n--- stderr ---\n${result.stderr.trimEnd()}`,
    );
    this.name = 'CommandFailedError';
  }
}

/**
 * Runs a command to completion, collecting its output; throws {@link CommandFailedError} with that
 * output when it fails, so that the one failing step explains itself in the CI log.
 *
 * @example
 * ```ts
 * const { stdout } = await runCommand('npm', ['pack', '--json'], { cwd: root });
 * ```
 */
export function runCommand(
  command: string,
  args: string[],
  options: RunOptions,
): Promise<RunResult> {
  const printed = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    running.add(child);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      const result = { exitCode: code ?? (signal ? 128 : 1), stdout, stderr };
      if ((options.allowedExitCodes ?? [0]).includes(result.exitCode)) resolve(result);
      else reject(new CommandFailedError(`${printed} (in ${options.cwd})`, result));
    });
  });
}

/**
 * Stops the commands still running (an interrupted check), and resolves once they have exited, so
 * that none writes into a folder being removed.
 *
 * @example
 * ```ts
 * process.once('SIGTERM', () => void stopRunningCommands().then(cleanUp));
 * ```
 */
export async function stopRunningCommands(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve());
          child.kill('SIGTERM');
        }),
    ),
  );
}
