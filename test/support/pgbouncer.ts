/**
 * A real PgBouncer in transaction mode in front of the test server, for the tests that prove the
 * library keeps no state on a pooled server connection.
 *
 * It runs the Debian package's binary (`apt-get install pgbouncer`; `.ci/run` installs it), or the
 * one named by PGBOUNCER. Without it, the pooler tests skip with a printed notice, except under
 * CI, where a missing PgBouncer fails them: CI must not lose that coverage silently.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';

export interface PgBouncer {
  /** `databaseUrl` (a database of the test server) as reached through the pooler. */
  url(databaseUrl: string): string;
  /** Stops PgBouncer and removes its configuration directory. Safe to call more than once. */
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** Server connections per database and user (`default_pool_size`). */
  poolSize: number;
}

const STARTUP_TIMEOUT_MS = 10_000;

/** The PgBouncer binary, or undefined (after printing why) when the pooler tests must skip. */
export function findPgBouncer(): string | undefined {
  const binary = process.env.PGBOUNCER ?? '/usr/sbin/pgbouncer';
  if (existsSync(binary)) return binary;
  const notice = `PgBouncer not found at ${binary} (apt-get install pgbouncer, or set PGBOUNCER)`;
  if (process.env.CI) throw new Error(`${notice}: the connection pooler tests cannot run`);
  console.warn(`${notice}: skipping the connection pooler tests`);
  return undefined;
}

/** Starts PgBouncer on a free loopback port, in front of the suite's admin server. */
export async function startPgBouncer(
  binary: string,
  options: PgBouncerOptions,
): Promise<PgBouncer> {
  const server = new URL(inject('adminDatabaseUrl'));
  const directory = await mkdtemp(join(tmpdir(), 'idempotency-pgbouncer-'));
  try {
    // A port found free can be taken before PgBouncer binds it: try another then.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const config = join(directory, 'pgbouncer.ini');
      await writeFile(config, configuration(server, port, options), { mode: 0o600 });
      const child = await launch(binary, config).catch((error: unknown) => {
        if (attempt < 3 && String(error).includes('Address already in use')) return undefined;
        throw error;
      });
      if (child) return running(child, port, directory);
    }
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

function configuration(server: URL, port: number, { poolSize }: PgBouncerOptions): string {
  const login = [
    `user=${quote(decodeURIComponent(server.username))}`,
    server.password ? `password=${quote(decodeURIComponent(server.password))}` : '',
  ];
  return `[databases]
; Any database name goes to the database of that name on the test server, as the test server's
; admin user: the pooler accepts any client user (auth_type = any).
* = host=${server.hostname} port=${server.port || 5432} ${login.join(' ')}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = ${poolSize}
max_client_conn = 500
; Hand out idle server connections in turn rather than the last one used: a client's statements
; outside a transaction then land on different server connections, as they do in a busy
; production pooler, instead of one client alone always getting the same one back.
server_round_robin = 1
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`;
}

function quote(value: string): string {
  if (/['\\\s]/.test(value)) throw new Error('unsupported character in the test server login');
  return `'${value}'`;
}

/** Resolves once PgBouncer listens; rejects with its log if it exits first. */
async function launch(binary: string, config: string): Promise<ChildProcess> {
  // PgBouncer refuses to run as root; -u makes it drop to an unprivileged user after it has read
  // its configuration (which stays readable by root only).
  const asUser = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child = spawn(binary, [...asUser, config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`PgBouncer did not listen within ${STARTUP_TIMEOUT_MS} ms:\n${log}`));
    }, STARTUP_TIMEOUT_MS);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      log = (log + chunk).slice(-4000);
      if (log.includes('listening on 127.0.0.1')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`PgBouncer exited (code ${code}, signal ${signal}):\n${log}`));
    });
  });
  // Keep draining its log, or a full pipe would stall it.
  child.stderr?.resume();
  return child;
}

function running(child: ChildProcess, port: number, directory: string): PgBouncer {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  // A test process that ends without calling stop() must not leave PgBouncer running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stopped: Promise<void> | undefined;
  return {
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    stop() {
      stopped ??= (async () => {
        process.off('exit', killOnExit);
        child.kill('SIGTERM');
        await exited;
        await rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}
