/**
 * The scopes that start with `prefix`, as a range of the ledger's primary key: `scope >= from`
 * and, unless `to` is null, `scope < to`. Scopes are `COLLATE "C"`, compared byte for byte in
 * UTF-8, which orders text as its code points: every scope that starts with the prefix lies in
 * the range, and a btree scan of the range reads nothing else. No pattern is involved, so `%` and
 * `_` in a prefix are plain characters.
 *
 * @example
 * ```ts
 * scopeRange('merchant:4'); // { from: 'merchant:4', to: 'merchant:5' }
 * scopeRange('');           // { from: '', to: null }: every scope
 * ```
 */
export function scopeRange(prefix: string): { from: string; to: string | null } {
  const codePoints = [...prefix].map((char) => char.codePointAt(0) ?? 0);
  // The smallest text greater than every text that starts with the prefix: the prefix with its
  // last code point raised by one, dropping trailing code points that cannot be raised.
  while (codePoints.length > 0) {
    const last = (codePoints.pop() ?? 0) + 1;
    if (last > 0x10ffff) continue;
    // Surrogates are not text: the next code point after U+D7FF is U+E000.
    codePoints.push(last === 0xd800 ? 0xe000 : last);
    return { from: prefix, to: String.fromCodePoint(...codePoints) };
  }
  return { from: prefix, to: null };
}
