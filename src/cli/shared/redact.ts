/** What a secret is replaced with in the command's output. */
export const REDACTED = '***';

/**
 * Replaces every occurrence of each secret in `text`. Longer secrets go first, so that a password
 * and its percent-encoded form (which contains it, or is contained in it) are both hidden whole.
 *
 * @example
 * ```ts
 * redact('password p@ss rejected', ['p@ss']); // 'password *** rejected'
 * ```
 */
export function redact(text: string, secrets: readonly string[]): string {
  let redacted = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (secret !== '') redacted = redacted.replaceAll(secret, REDACTED);
  }
  return redacted;
}
