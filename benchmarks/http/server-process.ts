// The HTTP section's servers, in a process of their own: the load generator (autocannon, in the
// benchmark's process) must not share an event loop with them, or each would slow the other and
// the figures would measure both. Every framework listens on its own port; they share one pool.
// Started and driven by server-process-client.ts; the messages are described there.
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { handlePoolErrors } from '../library.ts';
import type { HttpBenchDB } from './charge-route.ts';
import type { FrameworkServer, RunningServer } from './framework-server.ts';
import { FRAMEWORK_MODULES } from './frameworks.ts';
import type { ChildMessage, ParentMessage, StartMessage } from './server-process-client.ts';

function send(message: ChildMessage): void {
  process.send?.(message);
}

let db: Kysely<HttpBenchDB> | undefined;
const running: RunningServer[] = [];
let stopping: Promise<void> | undefined;

function stop(): Promise<void> {
  // Closing the pool waits for transactions in flight; the process then exits on its own.
  stopping ??= Promise.allSettled(running.map((server) => server.close()))
    .then(() => db?.destroy())
    .finally(() => {
      if (process.connected) process.disconnect();
    });
  return stopping;
}

async function start({ url, poolSize, frameworks: wanted }: StartMessage): Promise<void> {
  const all: FrameworkServer[] = [];
  for (const load of FRAMEWORK_MODULES) all.push((await load()).framework);
  const unknown = wanted.filter((name) => !all.some((framework) => framework.name === name));
  if (unknown.length > 0) {
    throw new Error(
      `unknown framework(s) ${unknown.join(', ')}; known: ${all.map((f) => f.name).join(', ')}`,
    );
  }
  const chosen = wanted.length === 0 ? all : all.filter((f) => wanted.includes(f.name));
  const pool = handlePoolErrors(new pg.Pool({ connectionString: url, max: poolSize }));
  db = new Kysely<HttpBenchDB>({ dialect: new PostgresDialect({ pool }) });
  const servers = [];
  for (const framework of chosen) {
    const server = await framework.start(db);
    running.push(server);
    servers.push({ name: framework.name, version: framework.version, port: server.port });
  }
  send({ type: 'ready', servers });
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'start') {
    start(message).catch((error: unknown) => {
      send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
      void stop();
    });
  } else if (message.type === 'cpu') {
    send({ type: 'cpu', usage: process.cpuUsage() });
  } else {
    void stop();
  }
});
// The benchmark's process is gone (Ctrl-C, a crash): nothing will ask this one to stop.
process.on('disconnect', () => void stop());
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
