// Starts server-process.ts and talks to it over IPC:
//   parent -> child  { type: 'start', url, poolSize, frameworks }   (frameworks: [] for all)
//   child -> parent  { type: 'ready', servers: [{ name, version, port }] }  or  { type: 'failed' }
//   parent -> child  { type: 'cpu' }    child -> parent  { type: 'cpu', usage }
//   parent -> child  { type: 'stop' }   the child closes its servers and pool, and exits
import { type ChildProcess, fork } from 'node:child_process';

export interface StartMessage {
  type: 'start';
  url: string;
  poolSize: number;
  /** Names of the frameworks to serve; empty for all. */
  frameworks: string[];
}

export type ParentMessage = StartMessage | { type: 'cpu' } | { type: 'stop' };

export interface ServedFramework {
  name: string;
  version: string;
  port: number;
}

export type ChildMessage =
  | { type: 'ready'; servers: ServedFramework[] }
  | { type: 'failed'; message: string }
  | { type: 'cpu'; usage: NodeJS.CpuUsage };

export interface ServerProcess {
  servers: ServedFramework[];
  /** CPU time the server process has used so far, in milliseconds. */
  cpuTimeMs(): Promise<number>;
  /** Stops the servers and waits for the process to exit (transactions in flight finish). */
  stop(): Promise<void>;
}

const STOP_TIMEOUT_MS = 15_000;

// Every process started and not yet stopped, for stopServerProcesses().
const started = new Set<() => Promise<void>>();

/** Stops every server process still running: before the benchmark database is dropped. */
export async function stopServerProcesses(): Promise<void> {
  await Promise.allSettled([...started].map((stop) => stop()));
}

export async function startServerProcess(
  options: Omit<StartMessage, 'type'>,
): Promise<ServerProcess> {
  // Its stdout goes to our stderr: stdout is the report.
  const child = fork(new URL('./server-process.ts', import.meta.url), [], {
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  // Sends `message` and waits for the answer of type `type`. Rejects, instead of waiting for ever,
  // when the process has gone (it stopped, crashed, or the run is being torn down).
  const ask = <T extends ChildMessage['type']>(message: ParentMessage, type: T) =>
    new Promise<Extract<ChildMessage, { type: T }>>((resolve, reject) => {
      const onMessage = (answer: ChildMessage) => {
        if (answer.type === 'failed') {
          done(() => reject(new Error(`HTTP servers: ${answer.message}`)));
        } else if (answer.type === type) {
          done(() => resolve(answer as Extract<ChildMessage, { type: T }>));
        }
      };
      const onGone = () =>
        done(() => reject(new Error('the HTTP server process is gone before answering')));
      const done = (settle: () => void) => {
        child.off('message', onMessage);
        child.off('disconnect', onGone);
        settle();
      };
      if (!child.connected) return onGone();
      child.on('message', onMessage);
      child.on('disconnect', onGone);
      child.send(message, (error) => {
        if (error) done(() => reject(error));
      });
    });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= stopChild(child, exited).finally(() => started.delete(stop));
    return stopping;
  };
  started.add(stop);
  let servers: ServedFramework[];
  try {
    ({ servers } = await ask({ type: 'start', ...options }, 'ready'));
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    servers,
    async cpuTimeMs() {
      const { usage } = await ask({ type: 'cpu' }, 'cpu');
      return (usage.user + usage.system) / 1000;
    },
    stop,
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  // A process that has gone already cannot be told; its exit code says how it went.
  if (child.connected) child.send({ type: 'stop' } satisfies ParentMessage, () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
  });
  const code = await Promise.race([exited, timeout]).finally(() => clearTimeout(timer));
  if (code === 'timeout') {
    child.kill('SIGKILL');
    throw new Error(`the HTTP server process did not stop within ${STOP_TIMEOUT_MS} ms`);
  }
  if (code !== 0) throw new Error(`the HTTP server process exited with code ${code}`);
}
