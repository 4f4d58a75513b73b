import type { ConfirmChannel } from 'amqplib';
import type { OutboxMessage } from '../index.ts';

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
 * channel closes first.
 *
 * Give a function that returns a channel rather than a channel, and the publisher reconnects: it
 * calls the function again after the channel closed or a publish failed on it. The function does
 * the connecting (and caches the connection as it likes).
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
    const confirmChannel = await using;
    try {
      await new Promise<void>((resolve, reject) => {
        // publish() throws at once on a closed channel; otherwise the callback reports the confirm.
        confirmChannel.publish(
          exchange,
          routingKey(message),
          Buffer.from(JSON.stringify(message.payload)),
          {
            messageId: message.messageId,
            persistent: true,
            contentType: 'application/json',
            headers: message.headers,
          },
          (error) => (error ? reject(error) : resolve()),
        );
      });
    } catch (error) {
      // The next publish opens a new channel (only when the user gave a way to open one).
      if (typeof channel === 'function') forget(using);
      throw error;
    }
  };
}
