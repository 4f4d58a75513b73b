import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Jsonified } from '../../index.ts';
import {
  type AnyKysely,
  assertAdapterOptions,
  isHeader,
  readMessageId,
  retryDelayFor,
} from '../adapter-options.ts';
import {
  type AdapterDelivery,
  type ConsumeResult,
  consumeResolved,
  type MessageHandler,
} from '../consume-once.ts';
import {
  type ConsumerOptions,
  defaultRetryDelayMs,
  resolveConsumerOptions,
} from '../consumer-options.ts';
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

/**
 * A message listener for `channel.consume()` that processes each message at most once per
 * (scope, message id), and acknowledges it only after its transaction committed:
 *
 * - processed, or replayed (a redelivery or a duplicate publish of a processed message, found in
 *   the ledger: the handler does not run): `ack`;
 * - the handler failed with attempts left: held `retryDelayMs`, then `nack` with requeue;
 * - no id, an invalid id, or the last attempt failed: `onDeadLetter`, then `ack`.
 *
 * Attempts are the broker's count where it keeps one: a quorum queue's `x-delivery-count` header,
 * read only on a redelivery (`fields.redelivered`), since on a first delivery the header can only
 * be the publisher's. A classic queue keeps no count; the failures that reached the handler are
 * then counted in this process, per handler, for the 10,000 messages that failed last (a consumer
 * that crashes on a message is not counted, and N consumers allow up to N × `maxAttempts`). Consume with `noAck: false` (the
 * default).
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
  const resolved = resolveConsumerOptions(options, 'idempotentAmqpHandler');
  const { handler, messageId = 'messageId', retryDelayMs = defaultRetryDelayMs } = options;
  assertAdapterOptions(
    'idempotentAmqpHandler',
    {
      handler,
      retryDelayMs,
      messageId:
        messageId === 'messageId' || typeof messageId === 'function' || isHeader(messageId),
    },
    "'messageId', { header: string } or a function",
  );
  const failures = new FailureCounts(resolved.scope);
  const idOf = messageIdReader(messageId);
  return async (message) => {
    const reading = readMessageId(idOf, message);
    const id = 'messageId' in reading ? reading.messageId : undefined;
    const counted = deliveryCount(message);
    const attempt = counted === undefined ? (id ? failures.failures(id) : 0) + 1 : counted + 1;
    const delivery: AdapterDelivery<ConsumeMessage> = {
      message,
      messageId: id,
      attempt,
      ...('idError' in reading ? { idError: { error: reading.idError } } : {}),
    };
    const result = await consumeResolved(db, resolved, delivery, handler);
    if (result.outcome === 'retry') {
      // A failure before the handler (the database, a replay) is no attempt of the message's.
      if (id && delivery.reachedHandler) failures.record(id, attempt);
      await sleep(retryDelayFor(retryDelayMs, attempt));
      channel.nack(message, false, true);
    } else {
      channel.ack(message);
      // After the ack: when it throws (the channel closed), the redelivery keeps the count.
      if (id) failures.forget(id);
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
