/**
 * Idempotency keys are secrets of the caller: whoever holds one can replay the response it stands
 * for. What the library tells the outside world about a call (its events, and through them traces
 * and metrics) names a key by a keyed hash of it, never the key itself, unless the application
 * opts in.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { parseOptions } from './internal/parse-options.ts';

/** Options of {@link configureKeyPrivacy}. */
export interface KeyPrivacyOptions {
  /**
   * The secret of the keyed hash (HMAC-SHA256), at least 16 bytes. Default: 32 random bytes drawn
   * when the library loads, so hashes can be compared within one process only. Give every
   * instance the same secret to follow a key across processes and restarts.
   */
  keyHashSecret?: string | Uint8Array;
  /** Put the raw key in events as well (`key`). Default false. */
  includeRawKeys?: boolean;
}

const MIN_SECRET_BYTES = 16;

const keyPrivacySchema = z.strictObject({
  keyHashSecret: z
    .union([z.string(), z.instanceof(Uint8Array)])
    .refine(
      (secret) => Buffer.byteLength(secret) >= MIN_SECRET_BYTES,
      `must be at least ${MIN_SECRET_BYTES} bytes`,
    )
    .optional(),
  includeRawKeys: z.boolean().optional(),
});

interface KeyPrivacy {
  secret: KeyObject;
  rawKeys: boolean;
}

// One state per process, on globalThis: the ESM and the CommonJS build of the library can both be
// loaded in one process, and publish on the same channel; they must hash keys alike.
const STATE = Symbol.for('idempotency-ledger.key-privacy');

function state(): KeyPrivacy {
  const holder = globalThis as { [STATE]?: KeyPrivacy };
  holder[STATE] ??= { secret: createSecretKey(randomBytes(32)), rawKeys: false };
  return holder[STATE];
}

/**
 * Sets how keys appear in the library's events: the secret of their keyed hash, and whether the
 * raw key is included too. Applies to every call made after it, in this process.
 *
 * @throws {InvalidIdempotencyOptionsError} for a secret shorter than 16 bytes or an unknown option.
 *
 * @example
 * ```ts
 * configureKeyPrivacy({ keyHashSecret: process.env.KEY_HASH_SECRET ?? '' });
 * ```
 */
export function configureKeyPrivacy(options: KeyPrivacyOptions): void {
  const parsed = parseOptions(keyPrivacySchema, options, 'configureKeyPrivacy');
  const current = state();
  if (parsed.keyHashSecret !== undefined) {
    current.secret = createSecretKey(Buffer.from(parsed.keyHashSecret));
  }
  if (parsed.includeRawKeys !== undefined) current.rawKeys = parsed.includeRawKeys;
}

/**
 * The keyed hash that names `key` in events: HMAC-SHA256 with the configured secret, the first 16
 * bytes as hex. The same key gives the same hash under the same secret, so an operator who holds
 * a client's key can find its calls; nobody can get the key back from the hash.
 *
 * @example
 * ```ts
 * // The key a client sent, as the events of its calls name it.
 * const keyHash = hashIdempotencyKey('3f1c2a9e-payment-retry');
 * ```
 */
export function hashIdempotencyKey(key: string): string {
  return createHmac('sha256', state().secret).update(key).digest('hex').slice(0, 32);
}

/** Whether events carry the raw key too ({@link configureKeyPrivacy}). */
export function rawKeysIncluded(): boolean {
  return state().rawKeys;
}
