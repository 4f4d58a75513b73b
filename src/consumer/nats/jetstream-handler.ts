import type { JsMsg } from '@nats-io/jetstream';
import { InvalidIdempotencyOptionsError, type Jsonified } from '../../index.ts';
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
 * published twice is two messages); or a function of the message (one that throws dead-letters
 * the message as `'invalid_id'`).
 *
 * @example
 * ```ts
 * messageId: { header: 'Event-Id' }
 * messageId: (message) => message.json<{ eventId: string }>().eventId
 * ```
 */
export type JetStreamMessageId =
  | { header: string }
  | 'stream-sequence'
  | ((message: JsMsg) => string | undefined);

/** Options of {@link idempotentJetStreamHandler}. */
export interface JetStreamConsumerOptions<K, R> extends ConsumerOptions<JsMsg> {
  /** Your work for one message, in the transaction that also records it. */
  handler: MessageHandler<K, JsMsg, R>;
  /**
   * Where the message id comes from. Default: the `Nats-Msg-Id` header.
   *
   * @example
   * ```ts
   * messageId: 'stream-sequence', // every stored message is processed, a republish too
   * ```
   */
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
  /**
   * While a message is being handled, tell the server every this many milliseconds that it is
   * still in progress (`working()`), which restarts its `ack_wait`. Default: off, and then the
   * consumer's `ack_wait` must exceed the handler's longest run plus `waitTimeoutMs`, or the
   * server redelivers the message while it is in flight (the copy then waits for the first, and
   * replays). Set it to a fraction of `ack_wait` (a third) for handlers that can run longer.
   *
   * @example
   * ```ts
   * // ack_wait 30 s: a handler may run for minutes without being redelivered.
   * workingIntervalMs: 10_000,
   * ```
   */
  workingIntervalMs?: number;
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
  const { workingIntervalMs } = options;
  if (
    workingIntervalMs !== undefined &&
    !(
      Number.isInteger(workingIntervalMs) &&
      workingIntervalMs > 0 &&
      workingIntervalMs <= 2 ** 31 - 1
    )
  ) {
    throw new InvalidIdempotencyOptionsError({
      message:
        'Invalid idempotentJetStreamHandler options: workingIntervalMs: must be a positive integer',
      issues: ['workingIntervalMs: must be a positive integer (milliseconds)'],
    });
  }
  const idOf = messageIdReader(messageId);
  return async (message) => {
    const attempt = message.info.deliveryCount;
    const reading = readMessageId(idOf, message);
    const delivery =
      'idError' in reading
        ? { message, messageId: undefined, attempt, idError: { error: reading.idError } }
        : { message, messageId: reading.messageId, attempt };
    const working = keepWorking(message, workingIntervalMs);
    let result: ConsumeResult<Jsonified<R>>;
    try {
      result = await consumeResolved(db, resolved, delivery, handler);
    } finally {
      clearInterval(working);
    }
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

/** Restarts the message's ack_wait on an interval while it is handled; nothing when off. */
function keepWorking(message: JsMsg, intervalMs: number | undefined): NodeJS.Timeout | undefined {
  if (intervalMs === undefined) return undefined;
  const timer = setInterval(() => {
    // A closed connection fails the settle that follows, where it is reported.
    try {
      message.working();
    } catch {}
  }, intervalMs);
  timer.unref();
  return timer;
}
