/** Methods that do not change state (RFC 9110): the adapters let them through untouched. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * True for GET, HEAD, OPTIONS and TRACE, which an idempotency key has nothing to protect.
 *
 * @example
 * ```ts
 * isSafeMethod('get'); // true
 * isSafeMethod('POST'); // false
 * ```
 */
export function isSafeMethod(method: string | undefined): boolean {
  return SAFE_METHODS.has((method ?? 'GET').toUpperCase());
}
