import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Kysely } from 'kysely';
import { InvalidIdempotencyOptionsError, type Jsonified } from '../../index.ts';
import {
  type ConsumeResult,
  type ConsumerOptions,
  consumeOnce,
  defaultRetryDelayMs,
  type MessageHandler,
  validateConsumerOptions,
} from '../index.ts';

// biome-ignore lint/suspicious/noExplicitAny: any database type; K carries the caller's.
type AnyKysely = Kysely<any>;

/**
 * Where the message id comes from: `'messageId'` (default), the AMQP `message-id` property the
 * producer sets (`publish(..., { messageId })`); `{ header }`, a header you name; or a function of
 * the message (return `undefined` when it has none).
 */
export type AmqpMessageId =
  | 'messageId'
  | { header: string }
  | ((message: ConsumeMessage) => string | undefined);

/** Options of {@link idempotentAmqpHandler}. */
export interface AmqpConsumerOptions<K, R> extends ConsumerOptions<ConsumeMessage> {
  /** Your work for one message, in the transaction that also records it. */
  handler: MessageHandler<K, ConsumeMessage, R>;
  /** Where the message id comes from. Default: the `messageId` property. */
  messageId?: AmqpMessageId;
  /**
   * How long a failed message is held before it is requeued (`nack` with requeue), given the
   * attempt that failed. Default 1 s, doubling up to 30 s. The message keeps its prefetch slot
   * meanwhile.
   */
  retryDelayMs?: (attempt: number) => number;
}

// Failures counted in this process, for queues whose broker does not count deliveries.
const MAX_COUNTED_MESSAGES = 10_000;

/**
 * A message listener for `channel.consume()` that processes each message at most once per
 * (scope, message id), and acknowledges it only after its transaction committed:
 *
 * - processed, or replayed (a redelivery or a duplicate publish of a processed message, found in
 *   the ledger: the handler does not run): `ack`;
 * - the handler failed with attempts left: held `retryDelayMs`, then `nack` with requeue;
 * - no id, an invalid id, or the last attempt failed: `onDeadLetter`, then `ack`.
 *
 * Attempts are the broker's count where it keeps one: a quorum queue's `x-delivery-count` header.
 * A classic queue keeps no count; the failures are then counted in this process (a consumer that
 * crashes on a message is not counted). Consume with `noAck: false` (the default).
 *
 * @returns A function that handles one message and resolves, once it is settled, with what became
 *   of it. It rejects, leaving the message unsettled, when the channel cannot settle it (it was
 *   closed), or for a `schema` or `encryption` option the ledger refuses.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, here rather than on each message.
 *
 * @example
 * ```ts
 * const onMessage = idempotentAmqpHandler(db, channel, {
 *   scope: 'orders',
 *   onDeadLetter: async ({ message, reason }) => {
 *     await parkedMessages.insert({ body: message.content, reason });
 *   },
 *   handler: async (trx, message) => {
 *     const order = JSON.parse(message.content.toString());
 *     await trx.insertInto('orders').values(order).execute();
 *   },
 * });
 * await channel.prefetch(10);
 * await channel.consume('orders', (message) => {
 *   if (message) onMessage(message).catch((error) => console.error(error));
 * });
 * ```
 */
export function idempotentAmqpHandler<K extends AnyKysely, R>(
  db: K,
  channel: Pick<Channel, 'ack' | 'nack'>,
  options: AmqpConsumerOptions<K, R>,
): (message: ConsumeMessage) => Promise<ConsumeResult<Jsonified<R>>> {
  validateConsumerOptions(options, 'idempotentAmqpHandler');
  const { handler, messageId = 'messageId', retryDelayMs = defaultRetryDelayMs } = options;
  assertAdapterOptions('idempotentAmqpHandler', {
    handler,
    retryDelayMs,
    messageId: messageId === 'messageId' || typeof messageId === 'function' || isHeader(messageId),
  });
  const failures = new Map<string, number>();
  const idOf = messageIdReader(messageId);
  return async (message) => {
    const id = idOf(message);
    const counted = deliveryCount(message);
    const attempt = counted === undefined ? (id ? (failures.get(id) ?? 0) : 0) + 1 : counted + 1;
    const result = await consumeOnce(db, options, { message, messageId: id, attempt }, handler);
    if (result.outcome === 'retry') {
      if (id) countFailure(failures, id, attempt);
      await sleep(retryDelayMs(attempt));
      channel.nack(message, false, true);
    } else {
      if (id) failures.delete(id);
      channel.ack(message);
    }
    return result;
  };
}

function messageIdReader(source: AmqpMessageId): (message: ConsumeMessage) => string | undefined {
  if (typeof source === 'function') return source;
  if (source === 'messageId') return (message) => message.properties.messageId || undefined;
  const { header } = source;
  return (message) => {
    const value: unknown = message.properties.headers?.[header];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    // A number or anything else is not taken as an id: its text form would be a guess.
    return undefined;
  };
}

/** Deliveries before this one, as a quorum queue counts them; `undefined` for a classic queue. */
function deliveryCount(message: ConsumeMessage): number | undefined {
  const count: unknown = message.properties.headers?.['x-delivery-count'];
  return typeof count === 'number' && Number.isInteger(count) && count >= 0 ? count : undefined;
}

function countFailure(failures: Map<string, number>, id: string, attempt: number): void {
  failures.delete(id);
  failures.set(id, attempt);
  // Oldest first: a Map iterates in insertion order.
  if (failures.size > MAX_COUNTED_MESSAGES) {
    const oldest = failures.keys().next().value;
    if (oldest !== undefined) failures.delete(oldest);
  }
}

function isHeader(source: unknown): boolean {
  const header: unknown = (source as { header?: unknown } | null)?.header;
  return typeof header === 'string' && header !== '';
}

/** The adapter's own options, checked where the handler is built. */
function assertAdapterOptions(
  caller: string,
  options: { handler: unknown; retryDelayMs: unknown; messageId: boolean },
): void {
  const issues = [
    ...(typeof options.handler === 'function' ? [] : ['handler: must be a function']),
    ...(typeof options.retryDelayMs === 'function' ? [] : ['retryDelayMs: must be a function']),
    ...(options.messageId
      ? []
      : ["messageId: must be 'messageId', { header: string } or a function"]),
  ];
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid ${caller} options: ${issues.join('; ')}`,
      issues,
    });
  }
}
