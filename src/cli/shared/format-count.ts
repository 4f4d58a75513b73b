/**
 * A count with thousands separated, the same in every locale: `1,000,000`.
 *
 * @example
 * ```ts
 * formatCount(1234567); // '1,234,567'
 * ```
 */
export function formatCount(count: number): string {
  return String(count).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
