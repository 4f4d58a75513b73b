/**
 * `idempotency-ledger/consumer/amqplib`: an idempotent consumer for RabbitMQ through amqplib. See
 * {@link idempotentAmqpHandler}.
 *
 * @module
 */
export type { AmqpConsumerOptions, AmqpMessageId } from './amqp-consumer.ts';
export { idempotentAmqpHandler } from './amqp-handler.ts';
