/** The command finished its work (or a signal stopped a cleanup between two batches). */
export const EXIT_OK = 0;
/** The work failed: the database could not be reached in time, refused it, or raised an error. */
export const EXIT_FAILURE = 1;
/** The command line or the environment is wrong: nothing was attempted. */
export const EXIT_USAGE = 2;
/**
 * What the command was to act on does not exist (`operations release`: no such operation;
 * `release`: nothing to release).
 */
export const EXIT_NOT_FOUND = 3;
/** The command refused to act, and changed nothing (`release`: an attempt holds the lease). */
export const EXIT_REFUSED = 4;

/**
 * A problem the command line reports as one line, with the exit code it ends on.
 *
 * @example
 * ```ts
 * throw new CliError('DATABASE_URL is not set', { exitCode: EXIT_USAGE });
 * ```
 */
export class CliError extends Error {
  readonly exitCode: number;
  /** Whether the report points at the command's `--help`. */
  readonly showHelpHint: boolean;

  constructor(
    message: string,
    options: { exitCode: number; showHelpHint?: boolean; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode;
    this.showHelpHint = options.showHelpHint ?? false;
  }
}

/**
 * A mistake in the arguments: exit code 2, and a pointer to `--help`.
 *
 * @example
 * ```ts
 * throw usageError('--interval-ms applies only with --loop');
 * ```
 */
export function usageError(message: string): CliError {
  return new CliError(message, { exitCode: EXIT_USAGE, showHelpHint: true });
}
