/**
 * `idempotency-ledger/consumer`: idempotent message consumers. A message is processed at most once
 * per (scope, message id), its handler's writes and the ledger entry in one transaction, and
 * acknowledged only after the commit; a redelivery replays. See {@link consumeOnce}; the adapters
 * are `idempotency-ledger/consumer/amqplib` and `idempotency-ledger/consumer/nats`.
 *
 * @module
 */
export { consumeBatch } from './consume-batch.ts';
export {
  type ConsumeResult,
  consumeOnce,
  type Delivery,
  type MessageHandler,
} from './consume-once.ts';
export { MessageAttemptsExhaustedError, MissingMessageIdError } from './consumer-errors.ts';
export {
  type ConsumerOptions,
  DEFAULT_CONSUMER_MAX_ATTEMPTS,
  DEFAULT_CONSUMER_TTL_MS,
  type DeadLetter,
  type DeadLetterReason,
  defaultRetryDelayMs,
  validateConsumerOptions,
} from './consumer-options.ts';
export { messageBodyId } from './message-body-id.ts';
