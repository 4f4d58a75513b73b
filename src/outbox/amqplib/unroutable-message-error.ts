import { IdempotencyError } from '../../index.ts';

/**
 * RabbitMQ returned a message instead of routing it (`basic.return` of a mandatory publish): no
 * queue is bound to its routing key on its exchange, so nobody would ever receive it. The publish
 * fails, and the relay keeps the message and retries it (or parks it after `maxAttempts`) until a
 * queue takes it. The message names the exchange and the broker's reply, never the message id or
 * the payload.
 *
 * @example
 * ```ts
 * createOutboxRelay(db, {
 *   publish: amqpPublisher(channel),
 *   onError: (error) => {
 *     if (error instanceof UnroutableMessageError) log.warn(`no queue for ${error.exchange}`);
 *   },
 * });
 * ```
 */
export class UnroutableMessageError extends IdempotencyError {
  /** The exchange the message was published to (`''`: the default exchange). */
  readonly exchange: string;
  /** The routing key it was published with. */
  readonly routingKey: string;

  constructor(options: { exchange: string; routingKey: string; replyText: string }) {
    super({
      code: 'outbox_unroutable',
      message:
        `RabbitMQ returned the message (${options.replyText}): no queue is bound to its ` +
        `routing key on ${options.exchange === '' ? 'the default exchange' : `exchange ${JSON.stringify(options.exchange)}`}`,
    });
    this.exchange = options.exchange;
    this.routingKey = options.routingKey;
  }
}
