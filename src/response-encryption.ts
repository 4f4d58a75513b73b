/**
 * Encryption at rest of stored responses: AES-256-GCM with a key of the caller's, so that a dump
 * of the ledger does not expose what responses contain. The stored form, and how it is told from
 * a response in clear, is internal/sealed-envelope.ts's.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, type KeyObject, randomBytes } from 'node:crypto';
import { validateEncryptionKeys } from './internal/encryption-keys.ts';
import {
  ALGORITHM,
  additionalData,
  decryptionError,
  ENVELOPE_PREFIX,
  type Envelope,
  IV_BYTES,
  parseEnvelope,
  type SealBinding,
  TAG_BYTES,
  UNDEFINED_PLAINTEXT,
} from './internal/sealed-envelope.ts';

export type { SealBinding } from './internal/sealed-envelope.ts';

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

// Brands an instance across copies of this module (the ESM and CommonJS builds in one process).
const BRAND = Symbol.for('idempotency-ledger.response-encryption');

// Set by the class's static block: builds an instance from validated keys.
let construct: (
  keys: readonly { id: string; key: KeyObject }[],
  plaintext: 'accept' | 'refuse',
  write: 'encrypted' | 'plaintext',
) => ResponseEncryption;

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

  static {
    // The one way in besides the class itself, kept in this module: the constructor is private
    // (so that every instance has validated keys), and no static method joins the public API.
    construct = (keys, plaintext, write) => new ResponseEncryption(keys, plaintext, write);
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
   * Decrypts a stored envelope, with or without its leading space, that was sealed for `binding`.
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
  const { keys, plaintext, write } = validateEncryptionKeys(options);
  return construct(keys, plaintext, write);
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
