/**
 * `idempotency-ledger/consumer/nats`: an idempotent consumer for NATS JetStream
 * (`@nats-io/jetstream` 3). See {@link idempotentJetStreamHandler}, and
 * {@link idempotentJetStreamBatchHandler} for many messages in one transaction.
 *
 * @module
 */
export { idempotentJetStreamBatchHandler } from './jetstream-batch-handler.ts';
export type { JetStreamConsumerOptions, JetStreamMessageId } from './jetstream-consumer.ts';
export { idempotentJetStreamHandler } from './jetstream-handler.ts';
