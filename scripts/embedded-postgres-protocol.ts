// The IPC protocol between `embedded-postgres.ts` (parent) and
// `embedded-postgres-server.ts` (child). Messages are plain JSON objects so new
// commands can be added without breaking old ones.

/** `fast` is SIGINT (clients are disconnected, a checkpoint is written);
 * `immediate` is SIGQUIT (no checkpoint, crash recovery runs on the next start). */
export type ShutdownMode = 'fast' | 'immediate';

/** Options the parent passes to the child as a JSON command-line argument. */
export type ServerOptions = {
  /** Forward Postgres and initdb output to the parent as `log` events. */
  log: boolean;
  /** Absolute path of the `embedded-postgres` module to load; the project's own without it. */
  module?: string | undefined;
};

export type ServerCommand = { command: 'stop' } | { command: 'restart'; mode: ShutdownMode };

/** Parent to child. Every request is answered by a `reply` with the same id,
 * except `stop`, which is answered by the child exiting. */
export type ServerRequest = ServerCommand & { id: number };

/** Child to parent. */
export type ServerEvent =
  | { type: 'ready'; url: string; port: number }
  | { type: 'failed'; message: string }
  | { type: 'log'; line: string }
  | { type: 'reply'; id: number; error?: string };
