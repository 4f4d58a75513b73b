/**
 * `idempotency-ledger/consumer/nats`: an idempotent consumer for NATS JetStream
 * (`@nats-io/jetstream` 3). See {@link idempotentJetStreamHandler}.
 *
 * @module
 */
export {
  idempotentJetStreamHandler,
  type JetStreamConsumerOptions,
  type JetStreamMessageId,
} from './jetstream-handler.ts';
