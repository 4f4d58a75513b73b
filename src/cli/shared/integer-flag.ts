import { usageError } from './cli-error.ts';

/** The integers a flag accepts. */
export interface IntegerRange {
  min: number;
  max: number;
}

/** At most what a Node timer can wait: the bound of every `-ms` flag. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Parses the value of an integer flag, or returns `undefined` when the flag was not given. Only
 * plain decimal digits count: `abc`, `-5`, `1.5`, `1e3` and values outside `range` are refused
 * with a usage error that names the flag.
 *
 * @example
 * ```ts
 * integerFlag('batch-size', '500', { min: 1, max: 1_000_000 }); // 500
 * integerFlag('batch-size', 'abc', { min: 1, max: 1_000_000 });
 * // throws: --batch-size must be a positive integer, at most 1000000 (got "abc")
 * ```
 */
export function integerFlag(
  name: string,
  value: string | undefined,
  range: IntegerRange,
): number | undefined {
  if (value === undefined) return undefined;
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (parsed >= range.min && parsed <= range.max) return parsed;
  const kind =
    range.min === 0
      ? 'a non-negative integer'
      : range.min === 1
        ? 'a positive integer'
        : `an integer of at least ${range.min}`;
  throw usageError(
    `--${name} must be ${kind}, at most ${range.max} (got ${JSON.stringify(value)})`,
  );
}
