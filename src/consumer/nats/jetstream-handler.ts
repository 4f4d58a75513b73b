import type { JsMsg } from '@nats-io/jetstream';
import type { Jsonified } from '../../index.ts';
import {
  type AnyKysely,
  assertAdapterOptions,
  isHeader,
  readMessageId,
  retryDelayFor,
} from '../adapter-options.ts';
import { type ConsumeResult, consumeResolved, type MessageHandler } from '../consume-once.ts';
import {
  type ConsumerOptions,
  defaultRetryDelayMs,
  resolveConsumerOptions,
} from '../consumer-options.ts';

/**
 * Where the message id comes from: `{ header }` (default `{ header: 'Nats-Msg-Id' }`, the id
 * JetStream itself dedupes publishes by within the stream's duplicate window); `'stream-sequence'`,
 * the stream's name and the message's sequence in it (unique per stored message, so a message
 * published twice is two messages); or a function of the message.
 */
export type JetStreamMessageId =
  | { header: string }
  | 'stream-sequence'
  | ((message: JsMsg) => string | undefined);

/** Options of {@link idempotentJetStreamHandler}. */
export interface JetStreamConsumerOptions<K, R> extends ConsumerOptions<JsMsg> {
  /** Your work for one message, in the transaction that also records it. */
  handler: MessageHandler<K, JsMsg, R>;
  /** Where the message id comes from. Default: the `Nats-Msg-Id` header. */
  messageId?: JetStreamMessageId;
  /**
   * The redelivery delay asked of the server (`nak(delay)`) after a failed attempt. Default 1 s,
   * doubling up to 30 s. When it throws, or answers anything but a finite number >= 0, the
   * default is used: the message is still redelivered.
   *
   * @example
   * ```ts
   * retryDelayMs: (attempt) => Math.min(500 * attempt, 10_000),
   * ```
   */
  retryDelayMs?: (attempt: number) => number;
}

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
  const resolved = resolveConsumerOptions(options, 'idempotentJetStreamHandler');
  const {
    handler,
    messageId = { header: 'Nats-Msg-Id' },
    retryDelayMs = defaultRetryDelayMs,
  } = options;
  assertAdapterOptions(
    'idempotentJetStreamHandler',
    {
      handler,
      retryDelayMs,
      messageId:
        messageId === 'stream-sequence' || typeof messageId === 'function' || isHeader(messageId),
    },
    "{ header: string }, 'stream-sequence' or a function",
  );
  const idOf = messageIdReader(messageId);
  return async (message) => {
    const attempt = message.info.deliveryCount;
    const reading = readMessageId(idOf, message);
    const delivery =
      'idError' in reading
        ? { message, messageId: undefined, attempt, idError: { error: reading.idError } }
        : { message, messageId: reading.messageId, attempt };
    const result = await consumeResolved(db, resolved, delivery, handler);
    switch (result.outcome) {
      case 'processed':
      case 'replayed':
        message.ack();
        break;
      case 'dead_lettered':
        // Without a reason: a server older than 2.11 does not recognise `+TERM <reason>` as a
        // term, and would redeliver the message after ack_wait, forever.
        message.term();
        break;
      case 'retry':
        message.nak(retryDelayFor(retryDelayMs, attempt));
        break;
    }
    return result;
  };
}

function messageIdReader(source: JetStreamMessageId): (message: JsMsg) => string | undefined {
  if (typeof source === 'function') return source;
  if (source === 'stream-sequence') {
    return (message) => `${message.info.stream}:${message.info.streamSequence}`;
  }
  const { header } = source;
  // MsgHdrs.get() answers '' for a header that is absent.
  return (message) => message.headers?.get(header) || undefined;
}
