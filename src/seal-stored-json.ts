/**
 * Storing JSON values sealed for their place, for the modules that store values on the caller's
 * behalf (the ledger, operations), and reading them back.
 */
import { decryptionError, isSealed, type SealBinding } from './internal/sealed-envelope.ts';
import type { ResponseEncryption } from './response-encryption.ts';

/**
 * The text to store for a JSON value (`null`: none) that belongs to `binding`: sealed when
 * `encryption` is given (unless its `write` is `'plaintext'`), as is otherwise. For modules that
 * store values on the caller's behalf, as the ledger and operations do; read it back with
 * {@link openStoredJson}.
 *
 * @example
 * ```ts
 * const stored = sealStoredJson(JSON.stringify(result), encryption, {
 *   kind: 'operation_step', schema: 'idempotency', scope, key, step: 'charge',
 * });
 * ```
 */
export function sealStoredJson(
  json: string | null,
  encryption: ResponseEncryption | undefined,
  binding: SealBinding,
): string | null {
  return sealsNewValues(encryption) ? encryption.seal(json, binding) : json;
}

/** Whether {@link sealStoredJson} encrypts with `encryption` (not when it only decrypts). */
export function sealsNewValues(
  encryption: ResponseEncryption | undefined,
): encryption is ResponseEncryption {
  return encryption !== undefined && encryption.write === 'encrypted';
}

/**
 * The JSON text (`null`: none) of what {@link sealStoredJson} stored for `binding`: decrypted when
 * sealed, as is when stored in clear (unless `encryption` refuses plaintext).
 *
 * @throws {ResponseDecryptionError} for a sealed value read without `encryption`, one that cannot
 *   be opened with it, or a clear one when it has `plaintext: 'refuse'`.
 *
 * @example
 * ```ts
 * const json = openStoredJson(row.result, encryption, {
 *   kind: 'operation_step', schema: 'idempotency', scope, key, step: 'charge',
 * });
 * ```
 */
export function openStoredJson(
  stored: string | null,
  encryption: ResponseEncryption | undefined,
  binding: SealBinding,
): string | null {
  if (stored === null || !isSealed(stored, encryption !== undefined)) {
    if (encryption?.plaintext === 'refuse') throw decryptionError(binding, 'plaintext_refused');
    return stored;
  }
  if (!encryption) throw decryptionError(binding, 'no_key');
  return encryption.open(stored, binding);
}
