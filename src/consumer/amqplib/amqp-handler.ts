import type { Channel, ConsumeMessage } from 'amqplib';
import type { Jsonified } from '../../index.ts';
import type { AnyKysely } from '../adapter-options.ts';
import { type ConsumeResult, consumeResolved } from '../consume-once.ts';
import {
  type AmqpConsumerOptions,
  amqpConsumer,
  readDelivery,
  settleMessage,
} from './amqp-consumer.ts';

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
  const consumer = amqpConsumer(options, 'idempotentAmqpHandler');
  return async (message) => {
    const delivery = readDelivery(consumer, message);
    const result = await consumeResolved(db, consumer.resolved, delivery, consumer.handler);
    await settleMessage(channel, consumer, delivery, result);
    return result;
  };
}
