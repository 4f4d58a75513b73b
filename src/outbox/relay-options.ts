import { z } from 'zod';
import { InvalidIdempotencyOptionsError } from '../index.ts';
import { DEFAULT_OUTBOX_SCHEMA, parseOutboxInput } from './outbox-options.ts';
import { schemaName } from './outbox-schemas.ts';

/**
 * A message as the relay hands it to `publish`.
 *
 * @example
 * ```ts
 * const publish = async (message: OutboxMessage) => {
 *   await broker.send(message.topic, JSON.stringify(message.payload), { id: message.messageId });
 * };
 * ```
 */
export interface OutboxMessage {
  /** Stable across republishes: consumers deduplicate on it. */
  messageId: string;
  stream: string;
  /** 1, 2, 3... in its stream, in commit order (again from 1 after the stream was emptied). */
  position: number;
  topic: string;
  /** The JSON value that was enqueued, parsed. */
  payload: unknown;
  headers: Record<string, string>;
  /** Which publish of the message this is: failed publishes + 1 (a relay crash is not counted). */
  attempt: number;
  createdAt: Date;
}

/** Options of {@link createOutboxRelay}. */
export interface OutboxRelayOptions {
  /**
   * Publishes one message, resolving only once the broker confirmed it (a publisher confirm, a
   * PubAck): the message is deleted from the outbox after that. Throw to have it retried.
   *
   * @example
   * ```ts
   * publish: amqpPublisher(confirmChannel, { exchange: 'events' })
   * ```
   */
  publish: (message: OutboxMessage) => Promise<void>;
  /**
   * Postgres schema of the outbox tables (the ledger's). Default `idempotency`.
   *
   * @example
   * ```ts
   * schema: 'billing_ledger'
   * ```
   */
  schema?: string;
  /**
   * Messages published per stream and pass, at most. Default 100.
   *
   * @example
   * ```ts
   * batchSize: 500
   * ```
   */
  batchSize?: number;
  /**
   * Streams published at the same time by this relay, each in order. Default 4. Each uses a
   * connection of `db`'s pool for its statements.
   *
   * @example
   * ```ts
   * concurrency: 16
   * ```
   */
  concurrency?: number;
  /**
   * Pause of `start()` after a pass that published nothing. Default 1000 ms.
   *
   * @example
   * ```ts
   * pollIntervalMs: 200
   * ```
   */
  pollIntervalMs?: number;
  /**
   * How long a relay owns a stream after taking it or publishing on it: a relay that dies frees
   * its streams after this. At least twice `publishTimeoutMs`. Default 30 s.
   *
   * @example
   * ```ts
   * leaseMs: 10_000
   * ```
   */
  leaseMs?: number;
  /**
   * Longest wait for `publish` to settle: a publish that takes longer counts as failed (it may
   * still reach the broker: the message is published again, with the same id). At most half of
   * `leaseMs`: a relay publishes only while its lease lasts `publishTimeoutMs` more, renewing it
   * first when it might not: the margin lets one renewal cover publishes for at least half a
   * lease. Also bounds how long `stop()` waits. Default 10 s.
   *
   * @example
   * ```ts
   * publishTimeoutMs: 5000
   * ```
   */
  publishTimeoutMs?: number;
  /**
   * Backoff after the `attempt`-th failed publish of a message. Default
   * {@link defaultOutboxRetryDelayMs}: exponential from 100 ms, capped at 30 s, with jitter.
   *
   * @example
   * ```ts
   * retryDelayMs: (attempt) => Math.min(1000 * attempt, 10_000)
   * ```
   */
  retryDelayMs?: (attempt: number) => number;
  /**
   * Failed publishes after which a message is parked: it stays at the head of its stream, and the
   * stream is blocked (its later messages wait) until `releaseParkedMessage`. Default: never
   * parked, retried with backoff for as long as it fails.
   *
   * @example
   * ```ts
   * maxAttempts: 20
   * ```
   */
  maxAttempts?: number;
  /**
   * Told about every failed publish (with its message) and every failed pass (without one).
   *
   * @example
   * ```ts
   * onError: (error, message) => logger.warn({ err: error, stream: message?.stream }, 'outbox')
   * ```
   */
  onError?: (error: unknown, message: OutboxMessage | undefined) => void;
  /**
   * Aborting it stops the relay, as `stop()` does.
   *
   * @example
   * ```ts
   * signal: AbortSignal.timeout(60_000)
   * ```
   */
  signal?: AbortSignal;
}

/**
 * Default of {@link OutboxRelayOptions.retryDelayMs}: 100 ms doubling, capped at 30 s, +-20 % jitter.
 *
 * @example
 * ```ts
 * retryDelayMs: (attempt) => Math.min(defaultOutboxRetryDelayMs(attempt), 5000)
 * ```
 */
export function defaultOutboxRetryDelayMs(attempt: number): number {
  const base = Math.min(30_000, 100 * 2 ** Math.min(attempt - 1, 20));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

const functionSchema = z.custom<(...args: never[]) => unknown>(
  (value) => typeof value === 'function',
  'must be a function',
);

const relayOptionsSchema = z.strictObject({
  publish: functionSchema,
  schema: schemaName.default(DEFAULT_OUTBOX_SCHEMA),
  batchSize: z.int().min(1).max(10_000).default(100),
  concurrency: z.int().min(1).max(100).default(4),
  pollIntervalMs: z.int().min(1).max(2_147_483_647).default(1000),
  leaseMs: z.int().min(100).max(2_147_483_647).default(30_000),
  publishTimeoutMs: z.int().min(1).max(2_147_483_647).default(10_000),
  retryDelayMs: functionSchema.default(() => defaultOutboxRetryDelayMs),
  maxAttempts: z.int().min(1).optional(),
  onError: functionSchema.optional(),
  signal: z.instanceof(AbortSignal).optional(),
});

export type ResolvedRelayOptions = Required<
  Omit<OutboxRelayOptions, 'maxAttempts' | 'onError' | 'signal'>
> &
  Pick<OutboxRelayOptions, 'maxAttempts' | 'onError' | 'signal'>;

/** @throws {InvalidIdempotencyOptionsError} listing each invalid option. */
export function resolveRelayOptions(options: OutboxRelayOptions): ResolvedRelayOptions {
  const resolved = parseOutboxInput(
    relayOptionsSchema,
    options,
    'createOutboxRelay options',
  ) as ResolvedRelayOptions;
  if (resolved.publishTimeoutMs * 2 > resolved.leaseMs) {
    const issue = `publishTimeoutMs: must be at most half of leaseMs (${resolved.leaseMs})`;
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid createOutboxRelay options: ${issue}`,
      issues: [issue],
    });
  }
  return resolved;
}
