/**
 * Validation of responseEncryption()'s options: the keys become KeyObjects (copies of the bytes
 * given), and every problem is an InvalidIdempotencyOptionsError that describes a key by its
 * position, type and length only, never by its bytes.
 */
import { createSecretKey, KeyObject } from 'node:crypto';
import { InvalidIdempotencyOptionsError } from '../errors.ts';

/** AES-256. */
const KEY_BYTES = 32;
/** A key id: stored in clear beside each ciphertext, and safe to print. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** What responseEncryption() is given; its public type lives with it. */
interface KeyOptions {
  keys: readonly { id: string; key: unknown }[];
  plaintext?: 'accept' | 'refuse';
  write?: 'encrypted' | 'plaintext';
}

/**
 * The keys, checked and copied, the encrypting one first.
 *
 * @throws {InvalidIdempotencyOptionsError} naming each problem.
 */
export function validateEncryptionKeys(options: KeyOptions): {
  keys: { id: string; key: KeyObject }[];
  plaintext: 'accept' | 'refuse';
  write: 'encrypted' | 'plaintext';
} {
  const issues: string[] = [];
  const keys: { id: string; key: KeyObject }[] = [];
  const given: unknown = typeof options === 'object' && options !== null ? options.keys : undefined;
  if (!Array.isArray(given) || given.length === 0) {
    issues.push('keys: must be a non-empty array of { id, key }');
  } else {
    const seen = new Map<string, number>();
    given.forEach((entry: unknown, index) => {
      const { id, key } = (typeof entry === 'object' && entry !== null ? entry : {}) as {
        id?: unknown;
        key?: unknown;
      };
      if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) {
        issues.push(`keys[${index}].id: must be 1 to 64 characters among A-Z a-z 0-9 . _ : -`);
      } else if (seen.has(id)) {
        issues.push(`keys[${index}].id: the same id as keys[${seen.get(id)}]`);
      } else {
        seen.set(id, index);
      }
      const problem = keyProblem(key);
      if (problem) issues.push(`keys[${index}].key: ${problem}`);
      else if (typeof id === 'string') keys.push({ id, key: toKeyObject(key) });
    });
  }
  const plaintext = (options as { plaintext?: unknown } | undefined)?.plaintext ?? 'accept';
  if (plaintext !== 'accept' && plaintext !== 'refuse') {
    issues.push("plaintext: must be 'accept' or 'refuse'");
  }
  const write = (options as { write?: unknown } | undefined)?.write ?? 'encrypted';
  if (write !== 'encrypted' && write !== 'plaintext') {
    issues.push("write: must be 'encrypted' or 'plaintext'");
  } else if (write === 'plaintext' && plaintext === 'refuse') {
    issues.push("write: 'plaintext' stores responses that plaintext: 'refuse' refuses");
  }
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid responseEncryption options: ${issues.join('; ')}`,
      issues,
    });
  }
  return {
    keys,
    plaintext: plaintext as 'accept' | 'refuse',
    write: write as 'encrypted' | 'plaintext',
  };
}

/** Why `key` cannot be an AES-256 key; only its type and length are described, never its bytes. */
function keyProblem(key: unknown): string | undefined {
  if (key instanceof KeyObject) {
    if (key.type !== 'secret') return `must be a secret KeyObject, not a ${key.type} one`;
    const bytes = key.symmetricKeySize ?? 0;
    return bytes === KEY_BYTES ? undefined : `must be ${KEY_BYTES} bytes (AES-256), not ${bytes}`;
  }
  if (key instanceof Uint8Array) {
    return key.byteLength === KEY_BYTES
      ? undefined
      : `must be ${KEY_BYTES} bytes (AES-256), not ${key.byteLength}`;
  }
  return 'must be a Buffer, a Uint8Array or a secret KeyObject of 32 bytes';
}

function toKeyObject(key: unknown): KeyObject {
  // createSecretKey copies the bytes: zeroing or reusing the caller's buffer later changes nothing.
  return key instanceof KeyObject ? key : createSecretKey(key as Uint8Array);
}
