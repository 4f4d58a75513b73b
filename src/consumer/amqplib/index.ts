/**
 * `idempotency-ledger/consumer/amqplib`: an idempotent consumer for RabbitMQ through amqplib. See
 * {@link idempotentAmqpHandler}.
 *
 * @module
 */
export {
  type AmqpConsumerOptions,
  type AmqpMessageId,
  idempotentAmqpHandler,
} from './amqp-handler.ts';
