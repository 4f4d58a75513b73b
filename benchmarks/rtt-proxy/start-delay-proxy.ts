// Builds delay-proxy.c with the machine's gcc (once per version of the source) and starts it as a
// child process in front of a TCP server, to add a network's round-trip time on one machine.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SOURCE = fileURLToPath(new URL('./delay-proxy.c', import.meta.url));
/** Git ignores .scratch/: the binary is built where it runs, never committed. */
const BUILD_DIR = fileURLToPath(new URL('../../.scratch/delay-proxy/', import.meta.url));
const STARTUP_TIMEOUT_MS = 5_000;

export interface DelayProxy {
  host: string;
  port: number;
  /** The delay added in each direction: the round trip gains twice this. */
  oneWayDelayUs: number;
  /** Stops the proxy (its connections close). Safe to call more than once. */
  stop(): Promise<void>;
}

export interface DelayProxyOptions {
  targetHost: string;
  targetPort: number;
  oneWayDelayUs: number;
  /** From buildDelayProxy(); built on the first call when absent. */
  binary?: string;
}

/** Why the proxy cannot be built here (no gcc), or undefined when it can. */
export function delayProxyUnavailable(): string | undefined {
  const probe = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
  return probe.status === 0 ? undefined : 'gcc not found (apt-get install gcc)';
}

let building: Promise<string> | undefined;

/**
 * Compiles the proxy unless a binary of this exact source exists, and returns its path. The name
 * carries a hash of the source, so an edit rebuilds; the rename makes concurrent builds (two test
 * files at once) safe.
 */
export function buildDelayProxy(): Promise<string> {
  building ??= (async () => {
    const source = await readFile(SOURCE);
    const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
    const binary = `${BUILD_DIR}delay-proxy-${hash}`;
    if (await stat(binary).catch(() => undefined)) return binary;
    await mkdir(BUILD_DIR, { recursive: true });
    const temporary = `${binary}.${process.pid}.tmp`;
    try {
      await promisify(execFile)('gcc', ['-O2', '-Wall', '-Wextra', '-o', temporary, SOURCE]);
      await rename(temporary, binary);
    } finally {
      await rm(temporary, { force: true });
    }
    return binary;
  })();
  building.catch(() => {
    building = undefined;
  });
  return building;
}

/**
 * Starts a delay proxy on a free loopback port in front of `targetHost:targetPort`.
 *
 * @example
 * const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: 5432, oneWayDelayUs: 100 });
 * // postgres://postgres@127.0.0.1:${proxy.port}/postgres: every round trip is ~0.2 ms longer
 * await proxy.stop();
 */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const { targetHost, targetPort, oneWayDelayUs } = options;
  const binary = options.binary ?? (await buildDelayProxy());
  const args = ['0', targetHost, String(targetPort), String(oneWayDelayUs)];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Whatever ends this process, the proxy goes with it (the proxy also asks the kernel for a
  // signal when its parent dies, for a parent killed outright).
  const killAtExit = () => child.kill('SIGTERM');
  process.once('exit', killAtExit);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`delay-proxy did not start within ${STARTUP_TIMEOUT_MS} ms`)),
        STARTUP_TIMEOUT_MS,
      );
      createInterface({ input: child.stdout }).on('line', (line) => {
        const match = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`delay-proxy exited (${code ?? signal}) before listening: ${stderr}`));
      });
    });
    let stopping: Promise<void> | undefined;
    return {
      host: '127.0.0.1',
      port,
      oneWayDelayUs,
      stop() {
        stopping ??= (async () => {
          process.off('exit', killAtExit);
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        })();
        return stopping;
      },
    };
  } catch (error) {
    process.off('exit', killAtExit);
    child.kill('SIGKILL');
    throw error;
  }
}
