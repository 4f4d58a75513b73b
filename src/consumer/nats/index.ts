/**
 * `idempotency-ledger/consumer/nats`: an idempotent consumer for NATS JetStream
 * (`@nats-io/jetstream` 3). See {@link idempotentJetStreamHandler}.
 *
 * @module
 */
export type { JetStreamConsumerOptions, JetStreamMessageId } from './jetstream-consumer.ts';
export { idempotentJetStreamHandler } from './jetstream-handler.ts';
