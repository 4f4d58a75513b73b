import { IdempotencyError } from '../index.ts';

/**
 * A message arrived without an id to deduplicate it by: no `messageId` property, no id header.
 * It is never processed un-deduplicated: the consumer hands it to `onDeadLetter` with
 * `reason: 'missing_id'`. To process such messages, derive an id explicitly (see
 * {@link messageBodyId}).
 *
 * @example
 * ```ts
 * onDeadLetter: ({ error }) => {
 *   if (error instanceof MissingMessageIdError) metrics.increment('messages.without_id');
 * },
 * ```
 */
export class MissingMessageIdError extends IdempotencyError {
  constructor(options: { scope: string }) {
    super({
      code: 'missing_message_id',
      scope: options.scope,
      message: 'The message carries no id to deduplicate it by; it was not processed',
    });
  }
}

/**
 * A message was delivered again after its `maxAttempts` deliveries were spent (an earlier
 * consumer died while handling it, or `onDeadLetter` failed): it is dead-lettered without running
 * the handler again. The handler's last error, if any, was not seen by this process.
 *
 * @example
 * ```ts
 * onDeadLetter: ({ error, message }) => {
 *   if (error instanceof MessageAttemptsExhaustedError) {
 *     log.warn(`gave up after ${error.attempt} deliveries`, { subject: message.subject });
 *   }
 * },
 * ```
 */
export class MessageAttemptsExhaustedError extends IdempotencyError {
  /** The delivery attempt that found the budget spent (1 is the first delivery). */
  readonly attempt: number;
  readonly maxAttempts: number;

  constructor(options: { scope: string; key: string; attempt: number; maxAttempts: number }) {
    const { attempt, maxAttempts, ...rest } = options;
    super({
      ...rest,
      code: 'message_attempts_exhausted',
      message: `The message was delivered ${attempt} times; at most ${maxAttempts} attempts are allowed`,
    });
    this.attempt = attempt;
    this.maxAttempts = maxAttempts;
  }
}
