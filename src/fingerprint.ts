import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.ts';

/**
 * SHA-256 of the canonical JSON of a request: equal for requests that differ only in object key
 * order or in `undefined` properties, different when any value differs.
 *
 * @throws {NotJsonError} when the request has no JSON form.
 *
 * @example
 * ```ts
 * fingerprintRequest({ amount: 100, currency: 'eur' })
 *   .equals(fingerprintRequest({ currency: 'eur', amount: 100 })); // true
 * ```
 */
export function fingerprintRequest(request: unknown): Buffer {
  return createHash('sha256').update(canonicalJson(request), 'utf8').digest();
}
