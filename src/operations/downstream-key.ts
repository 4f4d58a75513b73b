import { createHash } from 'node:crypto';

/**
 * The key an operation's external call passes to the provider (a payment API's
 * `Idempotency-Key`): derived from (scope, key, step), so every attempt of the operation sends
 * the same one, and the provider can deduplicate a call made twice. It is a hash: the provider
 * never sees the client's key or the scope. 46 characters, `[A-Za-z0-9_-]`.
 *
 * @example
 * ```ts
 * downstreamKey('merchant:42', 'order-7', 'charge'); // 'il_…', the same on every attempt
 * ```
 */
export function downstreamKey(scope: string, key: string, step: string): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([scope, key, step]))
    .digest();
  return `il_${digest.toString('base64url').slice(0, 43)}`;
}
