import type { JetStreamClient, JetStreamPublishOptions } from '@nats-io/jetstream';
import type { OutboxMessage } from '../index.ts';
import { NoStreamError } from './no-stream-error.ts';

// Imported on the first message that has headers, not with this module: importing the subpath
// needs no NATS package (as the consumer's does not), and one without headers needs none but
// the client the caller passes.
let natsCore: Promise<typeof import('@nats-io/nats-core')> | undefined;

/** Options of {@link jetStreamPublisher}. */
export interface JetStreamPublisherOptions {
  /**
   * The subject of a message. Default: its topic.
   *
   * @example
   * ```ts
   * subject: (message) => `orders.${message.stream}`
   * ```
   */
  subject?: (message: OutboxMessage) => string;
}

/**
 * A `publish` function for the outbox relay that publishes to NATS JetStream: `msgID` (the
 * `Nats-Msg-Id` header, which `idempotentJetStreamHandler` deduplicates on by default) set to the
 * outbox message id, so that JetStream also drops a republish within the stream's duplicate
 * window; the message's headers; the payload as JSON. It resolves on the stream's PubAck, and
 * rejects when none comes: a {@link NoStreamError} when no stream listens on the subject, the
 * client's error for a timeout.
 *
 * The NATS client reconnects by itself: a publish caught by a disconnection either goes through
 * once the client reconnected or fails (the JetStream client's `timeout`), and the relay retries
 * it after its backoff.
 *
 * @example
 * ```ts
 * const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
 * const relay = createOutboxRelay(db, { publish: jetStreamPublisher(jetstream(nc)) });
 * ```
 */
export function jetStreamPublisher(
  js: JetStreamClient,
  options: JetStreamPublisherOptions = {},
): (message: OutboxMessage) => Promise<void> {
  const subject = options.subject ?? ((message: OutboxMessage) => message.topic);
  return async (message) => {
    const options: Partial<JetStreamPublishOptions> = { msgID: message.messageId };
    const entries = Object.entries(message.headers);
    if (entries.length > 0) {
      natsCore ??= import('@nats-io/nats-core');
      const headers = (await natsCore).headers();
      for (const [name, value] of entries) headers.set(name, value);
      options.headers = headers;
    }
    const to = subject(message);
    try {
      await js.publish(to, JSON.stringify(message.payload), options);
    } catch (error) {
      throw isNoResponders(error) ? new NoStreamError({ subject: to, cause: error }) : error;
    }
  };
}

/**
 * The client's "jetstream is not enabled", which it raises when its request had no responders:
 * recognised by that cause (a RequestError), not by the error's name or message.
 */
function isNoResponders(error: unknown): boolean {
  const cause = (error as { cause?: { isNoResponders?: unknown } } | null)?.cause;
  return typeof cause?.isNoResponders === 'function' && cause.isNoResponders() === true;
}
