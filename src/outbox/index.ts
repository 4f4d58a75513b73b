/**
 * `idempotency-ledger/outbox`: the transactional outbox. {@link enqueueMessage} writes a message in
 * the transaction of the change it announces; {@link createOutboxRelay} publishes it afterwards,
 * at least once, in commit order per stream. Publishers for RabbitMQ and NATS JetStream are
 * `idempotency-ledger/outbox/amqplib` and `idempotency-ledger/outbox/nats`.
 *
 * @module
 */
export {
  createOutboxRelay,
  type OutboxRelay,
  type RelayResult,
} from './create-outbox-relay.ts';
export {
  DuplicateOutboxMessageError,
  type EnqueuedMessage,
  type EnqueueOptions,
  enqueueMessage,
  enqueueMessages,
  type OutboxMessageInput,
} from './enqueue-message.ts';
export { type OutboxStreamStatus, outboxStatus, releaseParkedMessage } from './outbox-status.ts';
export {
  defaultOutboxRetryDelayMs,
  type OutboxMessage,
  type OutboxRelayOptions,
} from './relay-options.ts';
