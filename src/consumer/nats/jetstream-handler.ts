import type { JsMsg } from '@nats-io/jetstream';
import type { Jsonified } from '../../index.ts';
import type { AnyKysely } from '../adapter-options.ts';
import { type ConsumeResult, consumeResolved } from '../consume-once.ts';
import {
  type JetStreamConsumerOptions,
  jetStreamConsumer,
  keepWorking,
  readDelivery,
  settleMessage,
} from './jetstream-consumer.ts';

/**
 * A message handler for a JetStream consumer that processes each message at most once per
 * (scope, message id), and acknowledges it only after its transaction committed:
 *
 * - processed, or replayed (a redelivery or a duplicate publish of a processed message, found in
 *   the ledger: the handler does not run): `ack()`;
 * - the handler failed with attempts left: `nak(retryDelayMs(attempt))`;
 * - no id, an invalid id, or the last attempt failed: `onDeadLetter`, then `term()` (the server
 *   publishes its MSG_TERMINATED advisory).
 *
 * Attempts are the server's own count, `info.deliveryCount`, which includes deliveries to a
 * consumer that died or let `ack_wait` expire. Give the consumer a `max_deliver` above
 * `maxAttempts` (or none), so that the last attempt reaches `onDeadLetter`.
 *
 * @returns A function that handles one message and resolves, once it is settled, with what became
 *   of it. It rejects, leaving the message unsettled, when the connection cannot send the
 *   acknowledgement (it was closed), or for a `schema` or `encryption` option the ledger refuses.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, here rather than on each message.
 *
 * @example
 * ```ts
 * const handle = idempotentJetStreamHandler(db, {
 *   scope: 'orders',
 *   onDeadLetter: async ({ message, reason }) => {
 *     await parkedMessages.insert({ subject: message.subject, body: message.data, reason });
 *   },
 *   handler: async (trx, message) => {
 *     await trx.insertInto('orders').values(message.json<Order>()).execute();
 *   },
 * });
 * const consumer = await jetstream(nc).consumers.get('ORDERS', 'orders-worker');
 * for await (const message of await consumer.consume()) {
 *   await handle(message);
 * }
 * ```
 */
export function idempotentJetStreamHandler<K extends AnyKysely, R>(
  db: K,
  options: JetStreamConsumerOptions<K, R>,
): (message: JsMsg) => Promise<ConsumeResult<Jsonified<R>>> {
  const consumer = jetStreamConsumer(options, 'idempotentJetStreamHandler');
  return async (message) => {
    const delivery = readDelivery(consumer, message);
    const working = keepWorking(message, consumer.workingIntervalMs);
    let result: ConsumeResult<Jsonified<R>>;
    try {
      result = await consumeResolved(db, consumer.resolved, delivery, consumer.handler);
    } finally {
      clearInterval(working);
    }
    settleMessage(consumer, delivery, result);
    return result;
  };
}
