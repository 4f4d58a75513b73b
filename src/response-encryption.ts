/**
 * Encryption at rest of stored responses: AES-256-GCM with a key of the caller's, so that a dump
 * of the ledger does not expose what responses contain.
 *
 * How a ciphertext is told from a plaintext response, with no schema change: both live in the
 * same `json` column, which keeps the exact text it was given (json, unlike jsonb, stores its
 * input verbatim, and the ledger reads it back as `response::text`). A plaintext response is
 * `JSON.stringify()` output, which never has whitespace outside a string, so it never starts
 * with whitespace. A sealed response is a JSON object written after one leading space
 * ({@link ENVELOPE_PREFIX}), so a stored text that starts with whitespace is always read as an
 * envelope (or a malformed one: an error), never replayed.
 *
 * The space is lost when something rewrites the text (a jsonb round trip, a change of the
 * column's type, an export and import that trims it). So, when the reader has an encryption, a
 * text without the space that parses to an object whose keys are exactly `alg`, `kid`, `iv` and
 * `ct`, with `alg` `"A256GCM"`, is read as an envelope that lost its marker: it decrypts and
 * authenticates as any other, or fails. The price: a response of exactly that shape, stored in
 * clear, is refused (`authentication_failed`) instead of replayed by a reader with encryption.
 * A reader without encryption replays such a text as it is.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, type KeyObject, randomBytes } from 'node:crypto';
import { ResponseDecryptionError, type SealedKind } from './errors.ts';
import { KEY_ID_PATTERN, validateEncryptionKeys } from './internal/encryption-keys.ts';

/** One key of a {@link ResponseEncryption}: 32 bytes of secret, and a name stored beside each ciphertext. */
export interface ResponseEncryptionKey {
  /**
   * Names the key in every value it encrypts, so that it can be found again after rotation:
   * 1 to 64 characters among `A-Z a-z 0-9 . _ : -`, e.g. `'2026-12'`. Stored in clear.
   */
  id: string;
  /** 32 random bytes (AES-256): a `Buffer`/`Uint8Array`, or a secret `KeyObject`. */
  key: Uint8Array | KeyObject;
}

/** Options of {@link responseEncryption}. */
export interface ResponseEncryptionOptions {
  /**
   * The keys, newest first: the first encrypts every new value, and all of them decrypt. To
   * rotate, put a new key first and keep the old ones until the entries they encrypted expired.
   */
  keys: readonly ResponseEncryptionKey[];
  /**
   * What to do with a response stored in clear (written before encryption was turned on):
   * `'accept'` (default) replays it, so that turning encryption on needs no migration;
   * `'refuse'` throws {@link ResponseDecryptionError} (`plaintext_refused`), once every entry
   * written before has expired, so that a response written into the table by someone without the
   * key is never replayed.
   */
  plaintext?: 'accept' | 'refuse';
  /**
   * How new values are stored: `'encrypted'` (default), or `'plaintext'`, which decrypts what is
   * stored encrypted but stores new values in clear. The first phase of a rolling deploy that
   * turns encryption on: once every instance can read encrypted entries, a second deploy lets
   * them write encrypted ones (an instance that cannot read them would fail on them meanwhile).
   * Not with `plaintext: 'refuse'`.
   *
   * @example
   * ```ts
   * const encryption = responseEncryption({ keys: [{ id: '2026-12', key }], write: 'plaintext' });
   * ```
   */
  write?: 'encrypted' | 'plaintext';
}

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
const ENVELOPE_PREFIX = ' ';
const ALGORITHM = 'A256GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;
// The text a response of `undefined` is sealed as: JSON text is never empty.
const UNDEFINED_PLAINTEXT = '';

interface Envelope {
  alg: typeof ALGORITHM;
  kid: string;
  iv: string;
  ct: string;
}

// Brands an instance across copies of this module (the ESM and CommonJS builds in one process).
const BRAND = Symbol.for('idempotency-ledger.response-encryption');

/**
 * Keys that encrypt stored responses, built once with {@link responseEncryption} and passed as the
 * `encryption` option. Holds the key material out of sight: printing it (`console.log`,
 * `util.inspect`, `JSON.stringify`) shows the key ids only.
 */
export class ResponseEncryption {
  /** The ids of the keys, the encrypting one first. */
  readonly keyIds: readonly string[];
  /** How a response stored in clear is treated. */
  readonly plaintext: 'accept' | 'refuse';
  /** How new values are stored: encrypted, or in clear while the keys only decrypt. */
  readonly write: 'encrypted' | 'plaintext';
  readonly #keys: ReadonlyMap<string, KeyObject>;
  readonly #current: { id: string; key: KeyObject };

  /** Use {@link responseEncryption}, which validates the keys. */
  private constructor(
    keys: readonly { id: string; key: KeyObject }[],
    plaintext: 'accept' | 'refuse',
    write: 'encrypted' | 'plaintext',
  ) {
    const [current] = keys;
    if (!current) throw new Error('no key');
    this.#current = current;
    this.#keys = new Map(keys.map(({ id, key }) => [id, key]));
    this.keyIds = Object.freeze(keys.map(({ id }) => id));
    this.plaintext = plaintext;
    this.write = write;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** @internal Validates and builds; see {@link responseEncryption}. */
  static create(options: ResponseEncryptionOptions): ResponseEncryption {
    const { keys, plaintext, write } = validateEncryptionKeys(options);
    return new ResponseEncryption(keys, plaintext, write);
  }

  /**
   * Encrypts a response's JSON text (`null`: `fn` returned undefined) with the first key, bound
   * to `binding`. Returns the text to store.
   */
  seal(json: string | null, binding: SealBinding): string {
    const { id, key } = this.#current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(additionalData(binding, id));
    const body = Buffer.concat([
      cipher.update(json ?? UNDEFINED_PLAINTEXT, 'utf8'),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    const envelope: Envelope = {
      alg: ALGORITHM,
      kid: id,
      iv: iv.toString('base64url'),
      ct: body.toString('base64url'),
    };
    return ENVELOPE_PREFIX + JSON.stringify(envelope);
  }

  /**
   * Decrypts a stored envelope ({@link isSealed}), with or without its leading space, that was
   * sealed for `binding`.
   *
   * @throws {ResponseDecryptionError} when it is malformed, its key is not configured, or it
   *   fails authentication (altered, or sealed for another place).
   */
  open(stored: string, binding: SealBinding): string | null {
    const envelope = parseEnvelope(stored);
    if (!envelope) throw decryptionError(binding, 'malformed');
    const key = this.#keys.get(envelope.kid);
    if (!key) throw decryptionError(binding, 'unknown_key', envelope.kid);
    const iv = Buffer.from(envelope.iv, 'base64url');
    const body = Buffer.from(envelope.ct, 'base64url');
    if (iv.length !== IV_BYTES || body.length < TAG_BYTES) {
      throw decryptionError(binding, 'malformed', envelope.kid);
    }
    let text: string;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(additionalData(binding, envelope.kid));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      text = Buffer.concat([
        decipher.update(body.subarray(0, body.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch (error) {
      throw decryptionError(binding, 'authentication_failed', envelope.kid, error);
    }
    return text === UNDEFINED_PLAINTEXT ? null : text;
  }

  toJSON(): { keyIds: readonly string[]; plaintext: 'accept' | 'refuse'; write: string } {
    return { keyIds: this.keyIds, plaintext: this.plaintext, write: this.write };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    const { keyIds, plaintext, write } = this;
    return `ResponseEncryption { keyIds: ${JSON.stringify(keyIds)}, plaintext: '${plaintext}', write: '${write}' }`;
  }
}

/**
 * Builds the `encryption` option: stored responses are encrypted with AES-256-GCM under the first
 * key, and read with whichever key encrypted them. Each value gets a random 12-byte IV and is bound
 * to its schema, scope and key (and a ledger response to its request's fingerprint), so a
 * ciphertext copied onto another entry does not decrypt. The scope, the
 * key, the request's fingerprint and the timestamps stay in clear. Build it once, at startup.
 *
 * @throws {InvalidIdempotencyOptionsError} when there is no key, a key is not 32 bytes, or two
 *   keys share an id. The message never contains key material.
 *
 * @example
 * ```ts
 * import { responseEncryption, withIdempotency } from 'idempotency-ledger';
 *
 * const encryption = responseEncryption({
 *   keys: [
 *     { id: '2026-12', key: Buffer.from(process.env.LEDGER_KEY_2026_12 ?? '', 'base64') },
 *     { id: '2026-06', key: Buffer.from(process.env.LEDGER_KEY_2026_06 ?? '', 'base64') },
 *   ],
 * });
 * await withIdempotency(db, { scope, key, request, encryption }, fn);
 * ```
 */
export function responseEncryption(options: ResponseEncryptionOptions): ResponseEncryption {
  return ResponseEncryption.create(options);
}

/**
 * Whether `value` was built by {@link responseEncryption}, by any copy of this package (its ESM or
 * its CommonJS build): how a tool finds the encryption among a module's exports.
 *
 * @example
 * ```ts
 * const encryption = Object.values(await import('./operations.ts')).find(isResponseEncryption);
 * ```
 */
export function isResponseEncryption(value: unknown): value is ResponseEncryption {
  return (
    typeof value === 'object' &&
    value !== null &&
    Reflect.get(value, BRAND) === true &&
    typeof Reflect.get(value, 'seal') === 'function' &&
    typeof Reflect.get(value, 'open') === 'function'
  );
}

/**
 * True when `stored` is meant as a sealed value: it starts with whitespace, or, for a reader with
 * `encryption`, it is an envelope that lost its leading space (see the module doc).
 */
export function isSealed(stored: string, encryption?: ResponseEncryption | undefined): boolean {
  return isMarked(stored) || (encryption !== undefined && isUnmarkedEnvelope(stored));
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

/**
 * The text to store for a JSON value (`null`: none) that belongs to `binding`: sealed when
 * `encryption` is given (unless its `write` is `'plaintext'`), as is otherwise. For modules that store values on the caller's behalf,
 * as the ledger and operations do; read it back with {@link openStoredJson}.
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
  if (stored === null || !isSealed(stored, encryption)) {
    if (encryption?.plaintext === 'refuse') throw decryptionError(binding, 'plaintext_refused');
    return stored;
  }
  if (!encryption) throw decryptionError(binding, 'no_key');
  return encryption.open(stored, binding);
}

function parseEnvelope(stored: string): Envelope | undefined {
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
function additionalData(binding: SealBinding, keyId: string): Buffer {
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

function decryptionError(
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
