import pg from 'pg';
import { CliError, EXIT_USAGE } from './cli-error.ts';

/** The environment variable that holds the connection string. */
export const DATABASE_URL = 'DATABASE_URL';

const EXAMPLE = 'postgres://user:password@host:5432/database';

/**
 * Reads the connection string from `DATABASE_URL` and checks that `pg` can use it: a
 * `postgres://` or `postgresql://` URL (the socket form `postgres://user@/db?host=/var/run/postgresql`
 * included), a `socket:` URL, or a socket directory (`/var/run/postgresql db`). The messages never
 * repeat the value, which usually holds a password.
 *
 * @throws {CliError} exit code 2, when the variable is unset, empty or unusable.
 *
 * @example
 * ```ts
 * const connectionString = readDatabaseUrl(process.env);
 * ```
 */
export function readDatabaseUrl(env: Readonly<Record<string, string | undefined>>): string {
  const url = env[DATABASE_URL]?.trim();
  if (!url) {
    throw new CliError(`${DATABASE_URL} is not set: give the connection string, e.g. ${EXAMPLE}`, {
      exitCode: EXIT_USAGE,
    });
  }
  // pg reads anything else as a path relative to "postgres://base": `not-a-url` would become a
  // connection to a host named "base", and a puzzling getaddrinfo error.
  if (!url.startsWith('/') && !/^(postgres|postgresql|socket):\/\//i.test(url)) {
    throw new CliError(`${DATABASE_URL} is not a postgres:// URL, e.g. ${EXAMPLE}`, {
      exitCode: EXIT_USAGE,
    });
  }
  try {
    // The parser pg itself uses: whatever it accepts, the command accepts. No connection is made.
    new pg.Client({ connectionString: url });
  } catch (error) {
    throw new CliError(
      `${DATABASE_URL} cannot be parsed (${(error as Error).message}); percent-encode special ` +
        'characters in the user name and password, e.g. @ as %40',
      { exitCode: EXIT_USAGE, cause: error },
    );
  }
  return url;
}

/**
 * The passwords a connection string may carry, in every form a message could quote them: as pg
 * reads it, percent-encoded as written, and as the `password` query parameter. Works on strings
 * pg cannot parse too, since an error about such a string is what might quote it.
 *
 * @example
 * ```ts
 * passwordsIn('postgres://app:p%40ss@db/app'); // ['p@ss', 'p%40ss']
 * ```
 */
export function passwordsIn(url: string | undefined): string[] {
  if (!url) return [];
  const found = new Set<string>();
  const add = (raw: string | undefined) => {
    if (!raw) return;
    found.add(raw);
    try {
      found.add(decodeURIComponent(raw));
    } catch {
      // A malformed escape: the raw form is what a message would show.
    }
  };
  try {
    const { password } = new pg.Client({ connectionString: url });
    if (typeof password === 'string') add(password);
  } catch {
    // Unparsable: the patterns below still find it.
  }
  // Up to the last "@", as URL parsers read the user info.
  add(/^[a-z][a-z0-9+.-]*:\/\/[^:@/]*:(.*)@/i.exec(url)?.[1]);
  for (const match of url.matchAll(/[?&]password=([^&#]*)/gi)) add(match[1]);
  return [...found];
}
