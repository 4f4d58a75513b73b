import type { JsMsg } from '@nats-io/jetstream';
import type { Jsonified } from '../../index.ts';
import { type AnyKysely, assertBatchMessages } from '../adapter-options.ts';
import { consumeBatchResolved } from '../consume-batch.ts';
import type { ConsumeResult } from '../consume-once.ts';
import {
  type JetStreamConsumerOptions,
  jetStreamConsumer,
  keepWorking,
  readDelivery,
  settleMessage,
} from './jetstream-consumer.ts';

/**
 * {@link idempotentJetStreamHandler} for many messages at once, such as those of one `fetch()`:
 * they are processed in one transaction (`consumeBatch`, with its failure policy: when the
 * handler fails on one message, each message goes through `consumeOnce` on its own), then each is
 * settled as `idempotentJetStreamHandler` would: `ack()`, `term()` once dead-lettered, or
 * `nak(retryDelayMs(attempt))`. With `workingIntervalMs`, every message of the batch is kept in
 * progress while the batch runs.
 *
 * @returns A function that handles the messages and resolves, once each is settled, with one
 *   result per message in their order. It rejects, leaving them unsettled, for more than
 *   `MAX_BATCH_ITEMS` messages, or when the connection cannot send the acknowledgements.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, here rather than on each batch.
 *
 * @example
 * ```ts
 * const handle = idempotentJetStreamBatchHandler(db, { scope: 'orders', handler, onDeadLetter });
 * const consumer = await jetstream(nc).consumers.get('ORDERS', 'orders-worker');
 * for (;;) {
 *   const messages = [...(await consumer.fetch({ max_messages: 50, expires: 1000 }))];
 *   if (messages.length > 0) await handle(messages);
 * }
 * ```
 */
export function idempotentJetStreamBatchHandler<K extends AnyKysely, R>(
  db: K,
  options: JetStreamConsumerOptions<K, R>,
): (messages: readonly JsMsg[]) => Promise<ConsumeResult<Jsonified<R>>[]> {
  const consumer = jetStreamConsumer(options, 'idempotentJetStreamBatchHandler');
  return async (messages) => {
    assertBatchMessages('idempotentJetStreamBatchHandler', messages);
    const deliveries = messages.map((message) => readDelivery(consumer, message));
    const working = messages.map((message) => keepWorking(message, consumer.workingIntervalMs));
    let results: ConsumeResult<Jsonified<R>>[];
    try {
      results = await consumeBatchResolved(db, consumer.resolved, deliveries, consumer.handler);
    } finally {
      for (const timer of working) clearInterval(timer);
    }
    deliveries.forEach((delivery, index) => {
      settleMessage(consumer, delivery, results[index] as ConsumeResult<unknown>);
    });
    return results;
  };
}
