/**
 * The stored form of a sealed value, and how it is told from a value stored in clear.
 *
 * How a ciphertext is told from a plaintext response, with no schema change: both live in the
 * same `json` column, which keeps the exact text it was given (json, unlike jsonb, stores its
 * input verbatim, and the ledger reads it back as `response::text`). A plaintext response is
 * `JSON.stringify()` output, which never has whitespace outside a string, so it never starts
 * with whitespace. A sealed response is a JSON object written after one leading space
 * (`ENVELOPE_PREFIX`), so a stored text that starts with whitespace is always read as an
 * envelope (or a malformed one: an error), never replayed.
 *
 * The space is lost when something rewrites the text (a jsonb round trip, a change of the
 * column's type, an export and import that trims it). So, when the reader has an encryption, a
 * text without the space that parses to an object whose keys are exactly `alg`, `kid`, `iv` and
 * `ct`, with `alg` `"A256GCM"`, is read as an envelope that lost its marker: it decrypts and
 * authenticates as any other, or fails. The price: a response of exactly that shape, stored in
 * clear, is refused (`authentication_failed`) instead of replayed by a reader with encryption.
 * A reader without encryption replays such a text as it is.
 */
import { ResponseDecryptionError, type SealedKind } from '../errors.ts';
import { KEY_ID_PATTERN } from './encryption-keys.ts';

/** The place a sealed value belongs to (its {@link SealedKind} is part of it): a ciphertext copied to another one fails to decrypt. */
export interface SealBinding {
  kind: SealedKind;
  /** The Postgres schema of the table that stores it. */
  schema: string;
  scope: string;
  key: string;
  /** The step's name, for `'operation_step'`. */
  step?: string | undefined;
  /**
   * The hex fingerprint of the request the value answers, when the fingerprint is stored beside
   * it (a ledger entry's): a fingerprint rewritten in the table then no longer opens the value.
   */
  fingerprint?: string | null | undefined;
}

/** One leading space: what `JSON.stringify()` never writes, so what marks a sealed value. */
export const ENVELOPE_PREFIX = ' ';
export const ALGORITHM = 'A256GCM';
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
// The text a response of `undefined` is sealed as: JSON text is never empty.
export const UNDEFINED_PLAINTEXT = '';

export interface Envelope {
  alg: typeof ALGORITHM;
  kid: string;
  iv: string;
  ct: string;
}

/**
 * True when `stored` is meant as a sealed value: it starts with whitespace, or, for a reader
 * with an encryption (`readsUnmarked`), it is an envelope that lost its leading space (see the
 * module doc).
 */
export function isSealed(stored: string, readsUnmarked: boolean): boolean {
  return isMarked(stored) || (readsUnmarked && isUnmarkedEnvelope(stored));
}

function isMarked(stored: string): boolean {
  return /^[ \t\n\r]/.test(stored);
}

/** An object with exactly an envelope's keys and algorithm: a sealed value whose text was rewritten. */
function isUnmarkedEnvelope(stored: string): boolean {
  // Checked first so that replaying an ordinary response parses nothing more.
  if (!stored.startsWith('{') || !stored.includes(ALGORITHM)) return false;
  let value: unknown;
  try {
    value = JSON.parse(stored);
  } catch {
    return false;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value).sort().join();
  return keys === 'alg,ct,iv,kid' && Reflect.get(value, 'alg') === ALGORITHM;
}

export function parseEnvelope(stored: string): Envelope | undefined {
  // Exactly the marker the library writes, or none at all (a rewritten text, see isSealed).
  if (isMarked(stored) && !stored.startsWith(ENVELOPE_PREFIX)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(stored);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { alg, kid, iv, ct } = value as Record<string, unknown>;
  const base64url = /^[A-Za-z0-9_-]*$/;
  if (alg !== ALGORITHM || typeof kid !== 'string' || !KEY_ID_PATTERN.test(kid)) return undefined;
  if (typeof iv !== 'string' || typeof ct !== 'string') return undefined;
  if (!base64url.test(iv) || !base64url.test(ct)) return undefined;
  return { alg, kid, iv, ct };
}

/**
 * The authenticated data of a value: the format, what it is, where it belongs, the request it
 * answers and the key id. A JSON array, so no two bindings share an encoding whatever their
 * strings contain.
 */
export function additionalData(binding: SealBinding, keyId: string): Buffer {
  const { kind, schema, scope, key, step = null, fingerprint = null } = binding;
  return Buffer.from(
    JSON.stringify([
      'idempotency-ledger',
      ALGORITHM,
      kind,
      schema,
      scope,
      key,
      step,
      fingerprint,
      keyId,
    ]),
  );
}

export function decryptionError(
  binding: SealBinding,
  reason: ResponseDecryptionError['reason'],
  keyId?: string,
  cause?: unknown,
): ResponseDecryptionError {
  return new ResponseDecryptionError({
    scope: binding.scope,
    key: binding.key,
    stored: binding.kind,
    reason,
    keyId,
    cause,
  });
}
