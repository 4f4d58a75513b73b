/**
 * `idempotency-ledger/outbox/nats`: publishes the outbox's messages to NATS JetStream
 * (`@nats-io/jetstream` 3). See {@link jetStreamPublisher}.
 *
 * @module
 */
export { type JetStreamPublisherOptions, jetStreamPublisher } from './jetstream-publisher.ts';
export { NoStreamError } from './no-stream-error.ts';
