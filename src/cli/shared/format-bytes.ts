/**
 * A size in bytes as a person reads it, in the units `pg_size_pretty` uses (1 kB = 1024 bytes):
 * `512 bytes`, `12 kB`, `3.4 MB`, `1.2 GB`.
 *
 * @example
 * ```ts
 * formatBytes(3_565_158); // '3.4 MB'
 * ```
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
