import { InvalidIdempotencyOptionsError } from '../../index.ts';
import { CliError, EXIT_FAILURE, EXIT_USAGE } from './cli-error.ts';
import { describeError } from './describe-error.ts';

/** The name the binary is installed under, as messages and usage texts show it. */
export const BINARY = 'idempotency-ledger';

/**
 * Writes an error as one line (plus a pointer to `--help` after a usage error) and returns the
 * exit code it ends on: 2 for a wrong command line or environment (options the library refused
 * came from the command line too), 1 for everything else.
 *
 * @example
 * ```ts
 * return reportError('cleanup', error, context.stderr);
 * ```
 */
export function reportError(
  command: string | undefined,
  error: unknown,
  write: (text: string) => void,
): number {
  const invocation = command === undefined ? BINARY : `${BINARY} ${command}`;
  write(`${invocation}: ${describeError(error)}\n`);
  if (error instanceof CliError) {
    if (error.showHelpHint) write(`Run "${invocation} --help" for usage.\n`);
    return error.exitCode;
  }
  return error instanceof InvalidIdempotencyOptionsError ? EXIT_USAGE : EXIT_FAILURE;
}
