/**
 * The outbox relay: publishes the messages that committed transactions left in the outbox to
 * RabbitMQ, each customer's stream in order, and marks them sent once the broker confirmed them.
 * Run as many as you like: they share the work and never publish one stream from two at once.
 *
 *   DATABASE_URL=... AMQP_URL=amqp://guest:guest@127.0.0.1:5672 EXAMPLE_PREFIX=shop \
 *     node examples/messaging/relay-main.ts
 */
import { connect } from 'amqplib';
import { amqpPublisher } from '../../src/outbox/amqplib/index.ts';
import { createOutboxRelay } from '../../src/outbox/index.ts';
import { openDatabase, serviceEnvironment } from './schema.ts';

const { databaseUrl, amqpUrl, names } = serviceEnvironment();
const db = openDatabase(databaseUrl, 4);
const connection = await connect(amqpUrl);
// A confirm channel: the publisher resolves once the broker has the message, and only then is
// it marked sent.
const channel = await connection.createConfirmChannel();
// A lost broker connection ends the process: whatever it had not marked sent is published again
// by the next relay, with the same message id.
connection.on('close', () => process.exit(1));

const relay = createOutboxRelay(db, {
  publish: amqpPublisher(channel, {
    exchange: names.exchange,
    routingKey: (message) => message.topic,
  }),
  pollIntervalMs: 50,
  // A relay that dies keeps its streams until its lease runs out: the demo kills relays every
  // few hundred milliseconds, so it gives them short leases (the default is 30 s).
  leaseMs: 3000,
  publishTimeoutMs: 1000,
  onError: (error) => console.error(`publish failed, will retry: ${(error as Error).message}`),
});
relay.start();
console.log('ready');

process.once('SIGTERM', async () => {
  await relay.stop();
  await connection.close().catch(() => undefined);
  await db.destroy();
  process.exit(0);
});
