import net from 'node:net';
import pg from 'pg';
import { handlePoolErrors } from '../../index.ts';
import { CliError, EXIT_FAILURE } from './cli-error.ts';
import { describeError } from './describe-error.ts';

/** Options of {@link openPool}. */
export interface OpenPoolOptions {
  /** Time allowed for each connection attempt, this one and any later reconnection. */
  connectTimeoutMs: number;
  /** Aborting it cuts the first connection attempt short. */
  signal: AbortSignal;
  /** Connections the pool may open. Default 1. */
  maxConnections?: number;
}

/**
 * Opens a pool (of one connection by default) and connects its first now, so that an unreachable database fails the
 * command at once and a signal can stop it while it connects. Resolves to `undefined` when the
 * signal aborted first; nothing is left open then.
 *
 * @throws {CliError} exit code 1, when the connection fails or times out.
 *
 * @example
 * ```ts
 * const pool = await openPool(connectionString, { connectTimeoutMs: 10_000, signal });
 * if (pool === undefined) return EXIT_OK; // stopped
 * ```
 */
export async function openPool(
  connectionString: string,
  { connectTimeoutMs, signal, maxConnections = 1 }: OpenPoolOptions,
): Promise<pg.Pool | undefined> {
  if (signal.aborted) return undefined;
  const sockets = new Set<net.Socket>();
  const pool = handlePoolErrors(
    new pg.Pool({
      connectionString,
      max: maxConnections,
      connectionTimeoutMillis: connectTimeoutMs,
      // pg cannot cancel a connection attempt; destroying its socket can. pg wraps this socket in
      // TLS when the URL asks for it, so destroying it ends a TLS handshake as well.
      stream: () => {
        const socket = new net.Socket();
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        return socket;
      },
    }),
  );
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  signal.addEventListener('abort', cut, { once: true });
  try {
    const client = await pool.connect();
    client.release();
    return pool;
  } catch (error) {
    await pool.end();
    if (signal.aborted) return undefined;
    throw new CliError(`cannot connect to the database: ${describeError(error)}`, {
      exitCode: EXIT_FAILURE,
      cause: error,
    });
  } finally {
    signal.removeEventListener('abort', cut);
  }
}
