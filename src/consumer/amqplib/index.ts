/**
 * `idempotency-ledger/consumer/amqplib`: an idempotent consumer for RabbitMQ through amqplib. See
 * {@link idempotentAmqpHandler}, and
 * {@link idempotentAmqpBatchHandler} for many messages in one transaction.
 *
 * @module
 */
export { idempotentAmqpBatchHandler } from './amqp-batch-handler.ts';
export type { AmqpConsumerOptions, AmqpMessageId } from './amqp-consumer.ts';
export { idempotentAmqpHandler } from './amqp-handler.ts';
