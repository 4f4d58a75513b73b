/**
 * The payments service: consumes `order.placed` and charges the order's amount, once per
 * message, however often the message arrives. Runs until SIGTERM; the demo also SIGKILLs it.
 *
 *   DATABASE_URL=... AMQP_URL=amqp://guest:guest@127.0.0.1:5672 EXAMPLE_PREFIX=shop \
 *     node examples/messaging/payments-main.ts
 */
import { connect } from 'amqplib';
import { idempotentAmqpHandler } from '../../src/consumer/amqplib/index.ts';
import type { OrderPlaced } from './order-service.ts';
import { openDatabase, serviceEnvironment } from './schema.ts';

const { databaseUrl, amqpUrl, names } = serviceEnvironment();
const db = openDatabase(databaseUrl);
const connection = await connect(amqpUrl);
const channel = await connection.createChannel();

const onMessage = idempotentAmqpHandler(db, channel, {
  // The relay publishes each outbox message with its stable id as the AMQP message-id: a message
  // the relay published twice (it died before marking it sent) is deduplicated here.
  scope: 'payments:order-placed',
  handler: async (trx, message) => {
    const order = JSON.parse(message.content.toString()) as OrderPlaced;
    // Stands for the card charge: a write in the same transaction as the ledger entry.
    await trx
      .insertInto('charges')
      .values({ order_id: order.orderId, amount: order.amount })
      .execute();
    return { charged: order.amount };
  },
  onDeadLetter: ({ reason }) => {
    console.error(`dead-lettered a message: ${reason}`);
  },
  retryDelayMs: () => 50,
});

await channel.prefetch(16);
await channel.consume(names.queue, (message) => {
  if (!message) return;
  onMessage(message).then(
    // Said so that the demo can count them: a message that came again and was not charged.
    (result) => result.outcome === 'replayed' && console.error('replayed a duplicate'),
    (error) => console.error(error),
  );
});
console.log('ready');

process.once('SIGTERM', async () => {
  await channel.close().catch(() => undefined);
  await connection.close().catch(() => undefined);
  await db.destroy();
  process.exit(0);
});
