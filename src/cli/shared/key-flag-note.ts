/**
 * What the help of a command that takes `--key` says about giving one: a key is a secret of the
 * caller, and the command line is not a private place.
 *
 * @example
 * ```ts
 * const usage = `...\n  --key K   the idempotency key\n\n${KEY_FLAG_NOTE}\n`;
 * ```
 */
export const KEY_FLAG_NOTE = `A key that starts with "-" is given as --key=-abc (--key -abc reads as a missing value).
A key on the command line shows in the process list (ps) and in the shell's history: run the
command where that is acceptable, or remove it from the history afterwards.`;
