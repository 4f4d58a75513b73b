/**
 * `idempotency-ledger/outbox/amqplib`: publishes the outbox's messages to RabbitMQ through amqplib,
 * with publisher confirms. See {@link amqpPublisher}.
 *
 * @module
 */
export { type AmqpPublisherOptions, amqpPublisher } from './amqp-publisher.ts';
export { UnroutableMessageError } from './unroutable-message-error.ts';
