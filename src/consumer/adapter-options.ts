/**
 * What the broker adapters share and do not export: their options' checks, and the guards around
 * the functions a user passes them, so that a throwing one still leaves every message settled.
 */
import type { Kysely } from 'kysely';
import { InvalidIdempotencyOptionsError, MAX_BATCH_ITEMS } from '../index.ts';
import { defaultRetryDelayMs } from './consumer-options.ts';

// biome-ignore lint/suspicious/noExplicitAny: any database type; K carries the caller's.
export type AnyKysely = Kysely<any>;

/** Whether a `messageId` option is `{ header }` with a non-empty header name. */
export function isHeader(source: unknown): boolean {
  const header: unknown = (source as { header?: unknown } | null)?.header;
  return typeof header === 'string' && header !== '';
}

/**
 * The adapter's own options, checked where the handler is built.
 *
 * @throws {InvalidIdempotencyOptionsError} listing each invalid option.
 */
export function assertAdapterOptions(
  caller: string,
  options: { handler: unknown; retryDelayMs: unknown; messageId: boolean },
  messageIdForms: string,
): void {
  const issues = [
    ...(typeof options.handler === 'function' ? [] : ['handler: must be a function']),
    ...(typeof options.retryDelayMs === 'function' ? [] : ['retryDelayMs: must be a function']),
    ...(options.messageId ? [] : [`messageId: must be ${messageIdForms}`]),
  ];
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid ${caller} options: ${issues.join('; ')}`,
      issues,
    });
  }
}

/**
 * A batch adapter's messages: an array of at most `MAX_BATCH_ITEMS`, checked before any is read.
 *
 * @throws {InvalidIdempotencyOptionsError} otherwise; no message is settled.
 */
export function assertBatchMessages(caller: string, messages: unknown): void {
  if (!Array.isArray(messages) || messages.length > MAX_BATCH_ITEMS) {
    throw new InvalidIdempotencyOptionsError({
      message: `${caller} takes an array of at most ${MAX_BATCH_ITEMS} messages`,
      issues: [`messages: must be an array of at most ${MAX_BATCH_ITEMS} messages`],
    });
  }
}

/** A message's id, or what the user's `messageId` function threw reading it. */
export type MessageIdReading = { messageId: string | undefined } | { idError: unknown };

/** Reads the id with the user's reader; a reader that throws (a body that is not JSON) is caught. */
export function readMessageId<M>(
  idOf: (message: M) => string | undefined,
  message: M,
): MessageIdReading {
  try {
    return { messageId: idOf(message) };
  } catch (error) {
    return { idError: error };
  }
}

/**
 * The user's `retryDelayMs` for `attempt`, or the default one when it throws or answers anything
 * but a finite number >= 0: the message must still be redelivered.
 */
export function retryDelayFor(retryDelayMs: (attempt: number) => number, attempt: number): number {
  try {
    const delayMs = retryDelayMs(attempt);
    if (typeof delayMs === 'number' && Number.isFinite(delayMs) && delayMs >= 0) return delayMs;
  } catch {
    // Falls through to the default: a failing delay function is no reason to leave it unsettled.
  }
  return defaultRetryDelayMs(attempt);
}
