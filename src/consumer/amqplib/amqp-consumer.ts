/**
 * What both RabbitMQ handlers share: their options, how a message becomes a delivery (its id, its
 * attempt), and how it is settled once its result is known.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import { type AdapterConsumer, adapterConsumer } from '../adapter-consumer.ts';
import { isHeader, readMessageId, retryDelayFor } from '../adapter-options.ts';
import type { AdapterDelivery, ConsumeResult, MessageHandler } from '../consume-once.ts';
import type { ConsumerOptions } from '../consumer-options.ts';
import { FailureCounts } from './failure-counts.ts';

/**
 * Where the message id comes from: `'messageId'` (default), the AMQP `message-id` property the
 * producer sets (`publish(..., { messageId })`); `{ header }`, a header you name; or a function of
 * the message (return `undefined` when it has none; one that throws dead-letters the message as
 * `'invalid_id'`).
 *
 * @example
 * ```ts
 * messageId: { header: 'x-event-id' }
 * messageId: (message) => JSON.parse(message.content.toString()).eventId
 * ```
 */
export type AmqpMessageId =
  | 'messageId'
  | { header: string }
  | ((message: ConsumeMessage) => string | undefined);

/** Options of {@link idempotentAmqpHandler}. */
export interface AmqpConsumerOptions<K, R> extends ConsumerOptions<ConsumeMessage> {
  /** Your work for one message, in the transaction that also records it. */
  handler: MessageHandler<K, ConsumeMessage, R>;
  /**
   * Where the message id comes from. Default: the `messageId` property.
   *
   * @example
   * ```ts
   * messageId: (message) => message.properties.messageId || messageBodyId(message.content),
   * ```
   */
  messageId?: AmqpMessageId;
  /**
   * How long a failed message is held before it is requeued (`nack` with requeue), given the
   * attempt that failed. Default 1 s, doubling up to 30 s. The message keeps its prefetch slot
   * meanwhile. When it throws, or answers anything but a finite number >= 0, the default is
   * used: the message is still requeued.
   *
   * @example
   * ```ts
   * retryDelayMs: (attempt) => Math.min(500 * attempt, 10_000),
   * ```
   */
  retryDelayMs?: (attempt: number) => number;
}

/** A handler's options, validated once where it is built, and its failure counts. */
export interface AmqpConsumer<K, R> extends AdapterConsumer<K, ConsumeMessage, R> {
  failures: FailureCounts;
}

/**
 * Validates a handler's options.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options; `caller` names the handler.
 */
export function amqpConsumer<K, R>(
  options: AmqpConsumerOptions<K, R>,
  caller: string,
): AmqpConsumer<K, R> {
  const consumer = adapterConsumer(options, caller, {
    fallback: 'messageId' as AmqpMessageId,
    isValid: (source) => source === 'messageId' || typeof source === 'function' || isHeader(source),
    forms: "'messageId', { header: string } or a function",
    reader: messageIdReader,
  });
  return { ...consumer, failures: new FailureCounts(consumer.resolved.scope) };
}

/** The message as a delivery: its id (or why it has none) and which attempt this is. */
export function readDelivery<K, R>(
  consumer: AmqpConsumer<K, R>,
  message: ConsumeMessage,
): AdapterDelivery<ConsumeMessage> {
  const reading = readMessageId(consumer.idOf, message);
  const id = 'messageId' in reading ? reading.messageId : undefined;
  const counted = deliveryCount(message);
  const attempt =
    counted === undefined ? (id ? consumer.failures.failures(id) : 0) + 1 : counted + 1;
  return {
    message,
    messageId: id,
    attempt,
    ...('idError' in reading ? { idError: { error: reading.idError } } : {}),
  };
}

/** Acknowledges the message, or holds it `retryDelayMs` and requeues it, as its result says. */
export async function settleMessage<K, R>(
  channel: Pick<Channel, 'ack' | 'nack'>,
  consumer: AmqpConsumer<K, R>,
  delivery: AdapterDelivery<ConsumeMessage>,
  result: ConsumeResult<unknown>,
): Promise<void> {
  const { message, messageId: id, attempt } = delivery;
  if (result.outcome === 'retry') {
    // A failure before the handler (the database, a replay) is no attempt of the message's.
    if (id && delivery.reachedHandler) consumer.failures.record(id, attempt);
    await sleep(retryDelayFor(consumer.retryDelayMs, attempt));
    channel.nack(message, false, true);
  } else {
    channel.ack(message);
    // After the ack: when it throws (the channel closed), the redelivery keeps the count.
    if (id) consumer.failures.forget(id);
  }
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

/**
 * Deliveries before this one, as a quorum queue counts them; `undefined` when the broker kept no
 * count. Read only on a redelivery: on a first delivery the header can only be the publisher's
 * (a classic queue passes any header through), and a message published with a high count would
 * otherwise be dead-lettered unprocessed. On a quorum queue's redelivery the broker sets it.
 */
function deliveryCount(message: ConsumeMessage): number | undefined {
  if (!message.fields.redelivered) return undefined;
  const count: unknown = message.properties.headers?.['x-delivery-count'];
  return typeof count === 'number' && Number.isInteger(count) && count >= 0 ? count : undefined;
}
