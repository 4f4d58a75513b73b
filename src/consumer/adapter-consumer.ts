/**
 * What each broker adapter makes of its options where its handler is built: the consumer
 * options resolved once, the adapter's own options checked, and the message id reader.
 */
import { assertAdapterOptions } from './adapter-options.ts';
import type { MessageHandler } from './consume-once.ts';
import {
  type ConsumerOptions,
  defaultRetryDelayMs,
  type ResolvedConsumerOptions,
  resolveConsumerOptions,
} from './consumer-options.ts';

/** An adapter's options, validated once where its handler is built. */
export interface AdapterConsumer<K, M, R> {
  resolved: ResolvedConsumerOptions<M>;
  handler: MessageHandler<K, M, R>;
  retryDelayMs: (attempt: number) => number;
  idOf: (message: M) => string | undefined;
}

/** The options every adapter takes; `S` is its `messageId` option's type. */
export interface AdapterOptions<K, M, R, S> extends ConsumerOptions<M> {
  handler: MessageHandler<K, M, R>;
  messageId?: S;
  retryDelayMs?: (attempt: number) => number;
}

/** How an adapter reads its `messageId` option. */
export interface MessageIdSource<M, S> {
  /** The option's default. */
  fallback: S;
  isValid(source: S): boolean;
  /** The valid forms, for the error's message. */
  forms: string;
  /** The reader for a valid option. */
  reader(source: S): (message: M) => string | undefined;
}

/**
 * Resolves and checks an adapter's options.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options; `caller` names the handler.
 */
export function adapterConsumer<K, M, R, S>(
  options: AdapterOptions<K, M, R, S>,
  caller: string,
  ids: MessageIdSource<M, S>,
): AdapterConsumer<K, M, R> {
  const resolved = resolveConsumerOptions(options, caller);
  const { handler, messageId = ids.fallback, retryDelayMs = defaultRetryDelayMs } = options;
  assertAdapterOptions(
    caller,
    { handler, retryDelayMs, messageId: ids.isValid(messageId) },
    ids.forms,
  );
  return { resolved, handler, retryDelayMs, idOf: ids.reader(messageId) };
}
