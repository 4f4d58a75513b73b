/**
 * Lays rows out as columns separated by two spaces, each as wide as its widest cell, with no
 * trailing spaces. The first row is usually the header.
 *
 * @example
 * ```ts
 * formatTable([['NAME', 'ATTEMPTS'], ['create-payment', '3']]);
 * // 'NAME            ATTEMPTS\ncreate-payment  3\n'
 * ```
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) => `${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ')}`)
    .map((line) => `${line.trimEnd()}\n`)
    .join('');
}

/**
 * A value as one table cell: as it is when it reads unambiguously, JSON-quoted when it is empty
 * or holds spaces, quotes, backslashes or invisible characters (which would break the columns or
 * hide what the value really is).
 *
 * @example
 * ```ts
 * tableCell('order-7'); // 'order-7'
 * tableCell('order 7'); // '"order 7"'
 * ```
 */
export function tableCell(value: string): string {
  return value === '' || /[\s"\\\p{C}]/u.test(value) ? JSON.stringify(value) : value;
}

/**
 * A duration as a person reads it, to the unit that matters: `850ms`, `42s`, `4m05s`, `2h03m`,
 * `3d04h`. Rounded down.
 *
 * @example
 * ```ts
 * formatDurationMs(245_000); // '4m05s'
 * ```
 */
export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.floor(ms))}ms`;
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  const days = Math.floor(hours / 24);
  const two = (value: number) => String(value).padStart(2, '0');
  if (minutes === 0) return `${seconds}s`;
  if (hours === 0) return `${minutes}m${two(seconds % 60)}s`;
  if (days === 0) return `${hours}h${two(minutes % 60)}m`;
  return `${days}d${two(hours % 24)}h`;
}
