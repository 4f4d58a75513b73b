import {
  IdempotencyConflictError,
  type IdempotentTransaction,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  type Jsonified,
  withIdempotency,
} from '../index.ts';
import type { AnyKysely } from './adapter-options.ts';
import { MessageAttemptsExhaustedError, MissingMessageIdError } from './consumer-errors.ts';
import {
  type ConsumerOptions,
  type DeadLetter,
  type DeadLetterReason,
  ledgerOptions,
  type ResolvedConsumerOptions,
  resolveConsumerOptions,
} from './consumer-options.ts';

/**
 * Handles one message: its business writes go through `trx`; its return value (JSON) is stored,
 * and replayed to a redelivery instead of running it again.
 *
 * @example
 * ```ts
 * const handler: MessageHandler<Kysely<DB>, ConsumeMessage, { orderId: string }> = async (trx, message) => {
 *   const order = JSON.parse(message.content.toString());
 *   await trx.insertInto('orders').values(order).execute();
 *   return { orderId: order.id };
 * };
 * ```
 */
export type MessageHandler<K, M, R> = (trx: IdempotentTransaction<K>, message: M) => Promise<R>;

/**
 * One delivery of a message, as the adapter read it from the broker.
 *
 * @example
 * ```ts
 * // An SQS message: its own attempt count, and an id the producer set as an attribute.
 * const delivery: Delivery<Message> = {
 *   message,
 *   messageId: message.MessageAttributes?.eventId?.StringValue,
 *   attempt: Number(message.Attributes?.ApproximateReceiveCount ?? 1),
 * };
 * ```
 */
export interface Delivery<M> {
  /** The message, passed to the handler and to `onDeadLetter`. */
  message: M;
  /** The id to deduplicate by (the ledger key), or `undefined` when the message has none. */
  messageId: string | undefined;
  /** Which delivery this is, 1 for the first, as counted by the broker or the adapter. */
  attempt: number;
}

/**
 * What became of a delivery, and what the broker should be told:
 *
 * - `'processed'`: the handler ran and its transaction committed: acknowledge.
 * - `'replayed'`: the message was processed before (a redelivery, a duplicate publish): the
 *   handler did not run; acknowledge. `response` is what the first run returned.
 * - `'dead_lettered'`: `onDeadLetter` took it: settle it (acknowledge, or `term` on JetStream).
 * - `'retry'`: this attempt failed and more remain, it failed before the handler ran (the
 *   database, a replay), or `onDeadLetter` failed: nothing was committed; have it redelivered.
 *
 * @example
 * ```ts
 * switch (result.outcome) {
 *   case 'processed':
 *   case 'replayed':
 *   case 'dead_lettered':
 *     await deleteMessage(message);
 *     break;
 *   case 'retry':
 *     await changeVisibility(message, defaultRetryDelayMs(attempt));
 *     break;
 * }
 * ```
 */
export type ConsumeResult<R> =
  | { outcome: 'processed'; response: R }
  | { outcome: 'replayed'; response: R }
  | { outcome: 'dead_lettered'; reason: DeadLetterReason; error: unknown }
  | { outcome: 'retry'; error: unknown };

/**
 * Processes a delivered message at most once per (scope, message id): the handler's writes and
 * the ledger entry commit in one transaction ({@link withIdempotency}), and a redelivery of a
 * message whose entry exists replays without running the handler. The broker is not touched:
 * the result says whether to acknowledge or redeliver (the adapters in
 * `idempotency-ledger/consumer/amqplib` and `/nats` do it for you). Acknowledge only after this
 * resolves: that is what makes a crash between the commit and the acknowledgement harmless.
 *
 * A message without an id, or with an invalid one, is never processed: it goes to
 * `onDeadLetter`. A failing handler is retried up to `maxAttempts` deliveries, then dead-lettered.
 * A failure before the handler ran (the database unreachable, a stored result that cannot be
 * decrypted on replay) is always `'retry'`: it is no failure of the message.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options (a programming error: the message
 *   is left unsettled).
 *
 * @example
 * ```ts
 * const result = await consumeOnce(
 *   db,
 *   { scope: 'orders', onDeadLetter: ({ message }) => parkMessage(message) },
 *   { message, messageId: message.id, attempt: message.deliveryCount },
 *   async (trx, message) => {
 *     await trx.insertInto('orders').values(JSON.parse(message.body)).execute();
 *   },
 * );
 * if (result.outcome === 'retry') redeliverLater(message);
 * else acknowledge(message);
 * ```
 */
export async function consumeOnce<K extends AnyKysely, M, R>(
  db: K,
  options: ConsumerOptions<M>,
  delivery: Delivery<M>,
  handler: MessageHandler<K, M, R>,
): Promise<ConsumeResult<Jsonified<R>>> {
  const resolved = resolveConsumerOptions(options, 'consumeOnce');
  if (typeof handler !== 'function') {
    throw new InvalidIdempotencyOptionsError({
      message: 'consumeOnce needs a handler function',
      issues: ['handler: must be a function'],
    });
  }
  if (!Number.isInteger(delivery.attempt) || delivery.attempt < 1) {
    throw new InvalidIdempotencyOptionsError({
      message: 'consumeOnce needs the delivery attempt, an integer from 1',
      issues: ['attempt: must be an integer >= 1'],
    });
  }
  return consumeResolved(db, resolved, delivery, handler);
}

/**
 * A delivery as an adapter read it: `idError` when the user's id function threw on the message.
 * Internal: not exported from the module's index.
 */
export interface AdapterDelivery<M> extends Delivery<M> {
  idError?: { error: unknown };
  /** Set by {@link consumeResolved} once the attempt reached the handler (or the attempts check). */
  reachedHandler?: boolean;
}

/**
 * {@link consumeOnce} for options an adapter validated once, where it was built: nothing is
 * parsed again per message. Internal: not exported from the module's index.
 */
export async function consumeResolved<K extends AnyKysely, M, R>(
  db: K,
  options: ResolvedConsumerOptions<M>,
  delivery: AdapterDelivery<M>,
  handler: MessageHandler<K, M, R>,
): Promise<ConsumeResult<Jsonified<R>>> {
  const { scope, maxAttempts } = options;
  const { message, messageId: key, attempt } = delivery;
  if (delivery.idError !== undefined) {
    const { error } = delivery.idError;
    return deadLetter(options, { message, attempt, reason: 'invalid_id', error });
  }
  if (key === undefined || key === '') {
    const error = new MissingMessageIdError({ scope });
    return deadLetter(options, { message, attempt, reason: 'missing_id', error });
  }
  // An invalid key is refused before the handler runs; the same error from inside the handler (a
  // call of its own) is the handler's failure.
  let handlerRan = false;
  try {
    const { response, replayed } = await withIdempotency(
      db,
      { ...ledgerOptions(options), key },
      (trx) => {
        handlerRan = true;
        delivery.reachedHandler = true;
        // Checked inside the transaction, after the lookup: a redelivery of a message that was
        // processed replays whatever its count, and only an unprocessed one is given up.
        if (attempt > maxAttempts) {
          throw new MessageAttemptsExhaustedError({ scope, key, attempt, maxAttempts });
        }
        return handler(trx as IdempotentTransaction<K>, message);
      },
    );
    const result = response as Jsonified<R>;
    return replayed
      ? { outcome: 'replayed', response: result }
      : { outcome: 'processed', response: result };
  } catch (error) {
    if (!handlerRan && error instanceof InvalidIdempotencyKeyError) {
      return deadLetter(options, { message, attempt, reason: 'invalid_id', error });
    }
    if (!handlerRan && error instanceof InvalidIdempotencyOptionsError) throw error;
    // A duplicate of this message is in flight elsewhere: it commits (and this one then replays)
    // or rolls back (and this one runs); neither is this message's failure.
    if (error instanceof IdempotencyConflictError) return { outcome: 'retry', error };
    // Only an attempt that reached the handler is the message's failure. One that failed before
    // it (the pool, the connection, the replay of a processed message) says nothing about the
    // message: it is retried, so that a processed message never becomes a dead one and an outage
    // is ridden out with backoff.
    if (!handlerRan) return { outcome: 'retry', error };
    if (error instanceof MessageAttemptsExhaustedError || attempt >= maxAttempts) {
      return deadLetter(options, { message, attempt, reason: 'max_attempts', error });
    }
    return { outcome: 'retry', error };
  }
}

async function deadLetter<M>(
  options: ResolvedConsumerOptions<M>,
  letter: DeadLetter<M>,
): Promise<ConsumeResult<never>> {
  try {
    await options.onDeadLetter(letter);
  } catch (failure) {
    return { outcome: 'retry', error: failure };
  }
  return { outcome: 'dead_lettered', reason: letter.reason, error: letter.error };
}
