import { z } from 'zod';
import {
  type IdempotencyOptions,
  InvalidIdempotencyOptionsError,
  type ResponseEncryption,
  validateIdempotencyOptions,
} from '../index.ts';

/** Default time a processed message's entry is kept, so that a redelivery replays: 7 days. */
export const DEFAULT_CONSUMER_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Default number of deliveries a message gets before it is dead-lettered. */
export const DEFAULT_CONSUMER_MAX_ATTEMPTS = 5;

/**
 * Why a message was handed to `onDeadLetter`.
 *
 * @example
 * ```ts
 * onDeadLetter: ({ reason, message }) =>
 *   reason === 'max_attempts' ? parkForReplay(message) : rejectMalformed(message),
 * ```
 */
export type DeadLetterReason = 'missing_id' | 'invalid_id' | 'max_attempts';

/**
 * What `onDeadLetter` receives.
 *
 * @example
 * ```ts
 * onDeadLetter: async ({ message, reason, error, attempt }) => {
 *   await db.insertInto('dead_messages')
 *     .values({ id: message.properties.messageId, reason, attempt, error: String(error) })
 *     .onConflict((oc) => oc.doNothing())
 *     .execute();
 * },
 * ```
 */
export interface DeadLetter<M> {
  /** The message as the broker delivered it. */
  message: M;
  /**
   * `'missing_id'`: no id to deduplicate by; `'invalid_id'`: an id that is not 1 to 255 printable
   * ASCII characters, or an adapter's `messageId` function threw on the message; `'max_attempts'`:
   * its last allowed delivery failed, or it arrived after them.
   */
  reason: DeadLetterReason;
  /**
   * The handler's error on the last attempt, a `MissingMessageIdError`,
   * `InvalidIdempotencyKeyError` or `MessageAttemptsExhaustedError`, or what a `messageId`
   * function threw.
   */
  error: unknown;
  /** The delivery attempt that dead-lettered it (1 is the first delivery). */
  attempt: number;
}

/**
 * Options shared by the consumers: `consumeOnce` and the adapters.
 *
 * @example
 * ```ts
 * const options: ConsumerOptions<ConsumeMessage> = {
 *   scope: 'orders-queue',
 *   maxAttempts: 5,
 *   onDeadLetter: async ({ message, reason }) => {
 *     await deadLetters.insert({ body: message.content, reason });
 *   },
 * };
 * ```
 */
export interface ConsumerOptions<M> {
  /**
   * Namespace of the message ids: the source whose producers choose them (a queue, a stream, an
   * event type). Ids from two sources that could collide belong in two scopes. 1 to 255
   * characters.
   */
  scope: string;
  /**
   * How long a processed message's entry is kept, so that a redelivery or a duplicate publish
   * replays instead of running the handler, by the database clock. Default 7 days. Make it longer
   * than any redelivery or republish can come late: independent of, and much longer than, the
   * broker's own dedupe window (JetStream's duplicate window, 2 minutes by default; SQS FIFO's 5
   * minutes).
   *
   * @example
   * ```ts
   * ttlMs: 30 * 24 * 60 * 60 * 1000, // a dead-letter queue may be replayed up to a month later
   * ```
   */
  ttlMs?: number;
  /**
   * Deliveries a message gets: when the handler fails on the last one, or a delivery arrives after
   * them, the message goes to `onDeadLetter` and is settled. Default 5.
   */
  maxAttempts?: number;
  /**
   * Receives a message that will not be processed: no id, an invalid id, or its attempts spent.
   * The message is settled (acknowledged, or `term`ed on JetStream) only once this resolves; when
   * it throws, the message is redelivered and dead-lettered again. So it runs at least once per
   * dead message: make what it does idempotent (an insert keyed by the message id).
   */
  onDeadLetter: (deadLetter: DeadLetter<M>) => Promise<void> | void;
  /** Postgres schema that holds the ledger. Default `idempotency`. */
  schema?: string;
  /** Encrypts the stored handler results at rest; see `responseEncryption()`. */
  encryption?: ResponseEncryption;
  /** Longest wait for a duplicate of the message being handled concurrently. Default 10 s. */
  waitTimeoutMs?: number;
}

const consumerOptionsSchema = z.object({
  maxAttempts: z.int().min(1).max(1000).default(DEFAULT_CONSUMER_MAX_ATTEMPTS),
  onDeadLetter: z.custom<(deadLetter: never) => unknown>(
    (value) => typeof value === 'function',
    'must be a function: a message that cannot be processed goes there',
  ),
});

/** The options with their defaults, validated. */
export type ResolvedConsumerOptions<M> = ConsumerOptions<M> & {
  ttlMs: number;
  maxAttempts: number;
};

/** The options that consumeOnce passes on to withIdempotency for each message. */
export function ledgerOptions<M>(
  options: ConsumerOptions<M>,
): Omit<IdempotencyOptions, 'key'> & { ttlMs: number } {
  return {
    scope: options.scope,
    ttlMs: options.ttlMs ?? DEFAULT_CONSUMER_TTL_MS,
    ...(options.schema === undefined ? {} : { schema: options.schema }),
    ...(options.encryption === undefined ? {} : { encryption: options.encryption }),
    ...(options.waitTimeoutMs === undefined ? {} : { waitTimeoutMs: options.waitTimeoutMs }),
  };
}

/**
 * Validates the shared options; unknown keys are left to the caller (an adapter has its own).
 * What goes to withIdempotency is checked by the core's own rules, so that nothing that passes
 * here fails there on every message.
 *
 * @throws {InvalidIdempotencyOptionsError} listing each invalid option.
 */
export function resolveConsumerOptions<M>(
  options: ConsumerOptions<M>,
  caller: string,
): ResolvedConsumerOptions<M> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidIdempotencyOptionsError({
      message: `${caller} options must be an object`,
      issues: ['(options): must be an object'],
    });
  }
  const parsed = consumerOptionsSchema.safeParse(options);
  const issues = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  try {
    validateIdempotencyOptions(ledgerOptions(options), caller);
  } catch (error) {
    if (!(error instanceof InvalidIdempotencyOptionsError)) throw error;
    issues.unshift(...error.issues);
  }
  if (!parsed.success || issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid ${caller} options: ${issues.join('; ')}`,
      issues,
    });
  }
  return { ...options, ttlMs: ledgerOptions(options).ttlMs, maxAttempts: parsed.data.maxAttempts };
}

/**
 * Checks a consumer's options where the consumer is built, so that a mistake fails there and not
 * on every message. The adapters call it; so can an adapter of your own, before its first
 * `consumeOnce`.
 *
 * @throws {InvalidIdempotencyOptionsError} listing each invalid option; `caller` names the
 *   function in its message.
 *
 * @example
 * ```ts
 * export function idempotentSqsHandler(db, options) {
 *   validateConsumerOptions(options, 'idempotentSqsHandler');
 *   return (message) => consumeOnce(db, options, deliveryOf(message), options.handler);
 * }
 * ```
 */
export function validateConsumerOptions<M>(options: ConsumerOptions<M>, caller: string): void {
  resolveConsumerOptions(options, caller);
}

/**
 * The default wait before a failed message is redelivered: 1 s after the first attempt, doubling
 * up to 30 s.
 *
 * @example
 * ```ts
 * // Twice as patient as the default, for a database that fails over in about a minute.
 * retryDelayMs: (attempt) => 2 * defaultRetryDelayMs(attempt),
 * ```
 */
export function defaultRetryDelayMs(attempt: number): number {
  return Math.min(1000 * 2 ** (attempt - 1), 30_000);
}
