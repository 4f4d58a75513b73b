import { usageError } from './cli-error.ts';

/**
 * The value of a flag the command cannot run without, such as `--scope` and `--key`. The
 * messages name the flag, never its value: a key is a secret of the caller.
 *
 * @throws {CliError} exit code 2, when the flag is missing or empty.
 *
 * @example
 * ```ts
 * const key = requiredText('key', flags.key);
 * ```
 */
export function requiredText(name: string, value: string | undefined): string {
  if (value === undefined) throw usageError(`--${name} is required`);
  if (value === '') throw usageError(`--${name} must not be empty`);
  return value;
}
