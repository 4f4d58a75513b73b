import { IdempotencyError } from '../../index.ts';

/**
 * Nobody answered a JetStream publish: no stream listens on its subject (or the server runs
 * without JetStream). The JetStream client reports both as "jetstream is not enabled", which
 * misleads for the common case, a subject no stream was configured for. The relay keeps the
 * message and retries it (or parks it after `maxAttempts`) until a stream takes the subject.
 *
 * @example
 * ```ts
 * createOutboxRelay(db, {
 *   publish: jetStreamPublisher(js),
 *   onError: (error) => {
 *     if (error instanceof NoStreamError) log.warn(`no stream for ${error.subject}`);
 *   },
 * });
 * ```
 */
export class NoStreamError extends IdempotencyError {
  /** The subject the message was published to. */
  readonly subject: string;

  constructor(options: { subject: string; cause: unknown }) {
    super({
      code: 'outbox_no_stream',
      message:
        `No JetStream stream takes the subject ${JSON.stringify(options.subject)}: create a ` +
        'stream that listens on it (or enable JetStream on the server)',
      cause: options.cause,
    });
    this.subject = options.subject;
  }
}
