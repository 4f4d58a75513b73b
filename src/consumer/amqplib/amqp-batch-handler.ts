import type { Channel, ConsumeMessage } from 'amqplib';
import type { Jsonified } from '../../index.ts';
import { type AnyKysely, assertBatchMessages } from '../adapter-options.ts';
import { consumeBatchResolved } from '../consume-batch.ts';
import type { ConsumeResult } from '../consume-once.ts';
import {
  type AmqpConsumerOptions,
  amqpConsumer,
  readDelivery,
  settleMessage,
} from './amqp-consumer.ts';

/**
 * {@link idempotentAmqpHandler} for many messages at once: a function you give the messages you
 * gathered from `channel.consume()` (up to the prefetch), which processes them in one transaction
 * (`consumeBatch`, with its failure policy: when the handler fails on one message, each message
 * goes through `consumeOnce` on its own), then settles each as `idempotentAmqpHandler` would:
 * `ack` once committed, replayed or dead-lettered; a failed one held `retryDelayMs` and requeued.
 * Gathering is yours: a batch size, and how long a partial batch may wait for more.
 *
 * @returns A function that handles the messages and resolves, once each is settled, with one
 *   result per message in their order. It rejects, leaving them unsettled, for more than
 *   `MAX_BATCH_ITEMS` messages, or when the channel cannot settle them.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, here rather than on each batch.
 *
 * @example
 * ```ts
 * const onMessages = idempotentAmqpBatchHandler(db, channel, { scope: 'orders', handler, onDeadLetter });
 * let gathered: ConsumeMessage[] = [];
 * let timer: NodeJS.Timeout | undefined;
 * const flush = () => {
 *   clearTimeout(timer);
 *   const batch = gathered;
 *   gathered = [];
 *   if (batch.length > 0) onMessages(batch).catch((error) => console.error(error));
 * };
 * await channel.prefetch(100);
 * await channel.consume('orders', (message) => {
 *   if (!message) return;
 *   gathered.push(message);
 *   if (gathered.length >= 50) flush();
 *   else if (gathered.length === 1) timer = setTimeout(flush, 5); // a partial batch waits 5 ms
 * });
 * ```
 */
export function idempotentAmqpBatchHandler<K extends AnyKysely, R>(
  db: K,
  channel: Pick<Channel, 'ack' | 'nack'>,
  options: AmqpConsumerOptions<K, R>,
): (messages: readonly ConsumeMessage[]) => Promise<ConsumeResult<Jsonified<R>>[]> {
  const consumer = amqpConsumer(options, 'idempotentAmqpBatchHandler');
  return async (messages) => {
    assertBatchMessages('idempotentAmqpBatchHandler', messages);
    const deliveries = messages.map((message) => readDelivery(consumer, message));
    const results = await consumeBatchResolved(db, consumer.resolved, deliveries, consumer.handler);
    // In parallel: a message held before its requeue does not hold up the others' settling.
    await Promise.all(
      deliveries.map((delivery, index) =>
        settleMessage(channel, consumer, delivery, results[index] as ConsumeResult<unknown>),
      ),
    );
    return results;
  };
}
