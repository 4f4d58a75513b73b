/**
 * What both JetStream handlers share: their options, how a message becomes a delivery, and how
 * it is settled once its result is known.
 */
import type { JsMsg } from '@nats-io/jetstream';
import { InvalidIdempotencyOptionsError } from '../../index.ts';
import { type AdapterConsumer, adapterConsumer } from '../adapter-consumer.ts';
import { isHeader, readMessageId, retryDelayFor } from '../adapter-options.ts';
import type { AdapterDelivery, ConsumeResult, MessageHandler } from '../consume-once.ts';
import type { ConsumerOptions } from '../consumer-options.ts';

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

/** A handler's options, validated once where it is built. */
export interface JetStreamConsumer<K, R> extends AdapterConsumer<K, JsMsg, R> {
  workingIntervalMs: number | undefined;
}

/**
 * Validates a handler's options.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options; `caller` names the handler.
 */
export function jetStreamConsumer<K, R>(
  options: JetStreamConsumerOptions<K, R>,
  caller: string,
): JetStreamConsumer<K, R> {
  const consumer = adapterConsumer(options, caller, {
    fallback: { header: 'Nats-Msg-Id' } as JetStreamMessageId,
    isValid: (source) =>
      source === 'stream-sequence' || typeof source === 'function' || isHeader(source),
    forms: "{ header: string }, 'stream-sequence' or a function",
    reader: messageIdReader,
  });
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
      message: `Invalid ${caller} options: workingIntervalMs: must be a positive integer`,
      issues: ['workingIntervalMs: must be a positive integer (milliseconds)'],
    });
  }
  return { ...consumer, workingIntervalMs };
}

/** The message as a delivery: its id (or why it has none) and the server's delivery count. */
export function readDelivery<K, R>(
  consumer: JetStreamConsumer<K, R>,
  message: JsMsg,
): AdapterDelivery<JsMsg> {
  const attempt = message.info.deliveryCount;
  const reading = readMessageId(consumer.idOf, message);
  return 'idError' in reading
    ? { message, messageId: undefined, attempt, idError: { error: reading.idError } }
    : { message, messageId: reading.messageId, attempt };
}

/** Acknowledges, terminates or naks the message, as its result says. */
export function settleMessage<K, R>(
  consumer: JetStreamConsumer<K, R>,
  delivery: AdapterDelivery<JsMsg>,
  result: ConsumeResult<unknown>,
): void {
  const { message, attempt } = delivery;
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
      message.nak(retryDelayFor(consumer.retryDelayMs, attempt));
      break;
  }
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
export function keepWorking(
  message: JsMsg,
  intervalMs: number | undefined,
): NodeJS.Timeout | undefined {
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
