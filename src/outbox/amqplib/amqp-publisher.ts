import type { ConfirmChannel, Message } from 'amqplib';
import { InvalidIdempotencyOptionsError } from '../../index.ts';
import type { OutboxMessage } from '../index.ts';
import { UnroutableMessageError } from './unroutable-message-error.ts';

/** Publishes in flight on a channel, by message id: set when the broker returned one. */
type Returns = Map<string, { returned: string | undefined }>;
const returnsByChannel = new WeakMap<ConfirmChannel, Returns>();

/** Options of {@link amqpPublisher}. */
export interface AmqpPublisherOptions {
  /**
   * The exchange to publish to. Default `''`, the default exchange (routing key = queue name).
   *
   * @example
   * ```ts
   * exchange: 'events'
   * ```
   */
  exchange?: string;
  /**
   * The routing key of a message. Default: its topic.
   *
   * @example
   * ```ts
   * routingKey: (message) => `orders.${message.topic}`
   * ```
   */
  routingKey?: (message: OutboxMessage) => string;
}

/**
 * A `publish` function for the outbox relay that publishes to RabbitMQ on a confirm channel:
 * persistent, `messageId` set to the outbox message id (what `idempotentAmqpHandler` deduplicates
 * on by default), the message's headers, the payload as JSON. It resolves only once the broker
 * confirmed the message (publisher confirms), and rejects when the broker refuses it or the
 * channel closes first. Messages are published `mandatory`: one that no queue takes is returned
 * by the broker, and the publish rejects with an {@link UnroutableMessageError} (the relay keeps
 * the message and retries it) rather than resolving for a message nobody will receive.
 *
 * Give a function that returns a channel rather than a channel, and the publisher reconnects: it
 * calls the function again after the channel closed or a publish failed on it. The function does
 * the connecting (and caches the connection as it likes).
 *
 * @throws {InvalidIdempotencyOptionsError} for a channel without publisher confirms (made by
 *   `createChannel()` rather than `createConfirmChannel()`): nothing would ever confirm a publish.
 *   A channel function that returns one fails each publish with this error.
 *
 * @example
 * ```ts
 * const connection = await amqplib.connect(url);
 * const publish = amqpPublisher(await connection.createConfirmChannel(), { exchange: 'events' });
 * const relay = createOutboxRelay(db, { publish });
 * ```
 */
export function amqpPublisher(
  channel: ConfirmChannel | (() => Promise<ConfirmChannel>),
  options: AmqpPublisherOptions = {},
): (message: OutboxMessage) => Promise<void> {
  if (typeof channel !== 'function') assertConfirmChannel(channel);
  const exchange = options.exchange ?? '';
  const routingKey = options.routingKey ?? ((message: OutboxMessage) => message.topic);
  const open = typeof channel === 'function' ? channel : async () => channel;
  let current: Promise<ConfirmChannel> | undefined;

  const channelToUse = () => {
    if (current === undefined) {
      const opening = open();
      current = opening;
      opening.then(
        (opened) => opened.once('close', () => forget(opening)),
        () => forget(opening),
      );
    }
    return current;
  };
  const forget = (which: Promise<ConfirmChannel>) => {
    if (current === which) current = undefined;
  };

  return async (message) => {
    const using = channelToUse();
    try {
      const confirmChannel = await using;
      assertConfirmChannel(confirmChannel);
      await publishMandatory(confirmChannel, exchange, routingKey(message), message);
    } catch (error) {
      // The next publish opens a new channel (only when the user gave a way to open one), unless
      // the channel is not at fault: a returned message leaves it usable, and a new channel from
      // a function that returned one without confirms would be another one, leaked.
      const channelAtFault = !(
        error instanceof UnroutableMessageError || error instanceof InvalidIdempotencyOptionsError
      );
      if (typeof channel === 'function' && channelAtFault) forget(using);
      throw error;
    }
  };
}

/**
 * Publishes one message and waits for its confirm. RabbitMQ sends the `basic.return` of an
 * unroutable mandatory message before its `basic.ack`, on the same channel, so the return has
 * been seen by the time the confirm callback runs.
 */
async function publishMandatory(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  message: OutboxMessage,
): Promise<void> {
  const returns = watchReturns(channel);
  const pending = { returned: undefined as string | undefined };
  returns.set(message.messageId, pending);
  try {
    await new Promise<void>((resolve, reject) => {
      // publish() throws at once on a closed channel; otherwise the callback reports the confirm.
      channel.publish(
        exchange,
        routingKey,
        Buffer.from(JSON.stringify(message.payload)),
        {
          messageId: message.messageId,
          persistent: true,
          mandatory: true,
          contentType: 'application/json',
          headers: message.headers,
        },
        (error) => (error ? reject(error) : resolve()),
      );
    });
  } finally {
    if (returns.get(message.messageId) === pending) returns.delete(message.messageId);
  }
  if (pending.returned !== undefined) {
    throw new UnroutableMessageError({ exchange, routingKey, replyText: pending.returned });
  }
}

/** The channel's publishes in flight, with one 'return' listener per channel. */
function watchReturns(channel: ConfirmChannel): Returns {
  let returns = returnsByChannel.get(channel);
  if (returns === undefined) {
    const created: Returns = new Map();
    channel.on('return', (returned: Message) => {
      const pending = created.get(String(returned.properties.messageId));
      if (pending) {
        const { replyText } = returned.fields as { replyText?: unknown };
        pending.returned = typeof replyText === 'string' ? replyText : 'returned';
      }
    });
    returnsByChannel.set(channel, created);
    returns = created;
  }
  return returns;
}

function assertConfirmChannel(channel: ConfirmChannel): void {
  if (typeof (channel as { waitForConfirms?: unknown }).waitForConfirms === 'function') return;
  throw new InvalidIdempotencyOptionsError({
    message:
      'amqpPublisher needs a confirm channel (connection.createConfirmChannel()): on a plain channel no publish is ever confirmed',
    issues: ['channel: must be a confirm channel'],
  });
}
