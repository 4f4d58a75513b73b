/**
 * A consumer process for the crash tests: it takes one message with the adapter of <transport>,
 * whose handler writes a payment (scope, message id), and stops at <point> to be SIGKILLed there:
 *
 * - `in-handler`: the payment is written, its transaction still open; prints "in-handler";
 * - `before-ack`: the transaction committed, the acknowledgement not sent; prints "before-ack".
 *
 * Usage: node consumer-child.ts <amqplib|nats> <databaseUrl> <scope> <queue|stream> <point>
 */
import { jetstream } from '@nats-io/jetstream';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { idempotentAmqpHandler } from '../../src/consumer/amqplib/index.ts';
import { idempotentJetStreamHandler } from '../../src/consumer/nats/index.ts';
import { openAmqp, openNats } from './brokers.ts';
import { createPayment, type Database } from './ledger-fixture.ts';

const [transport, url, scope, source, point] = process.argv.slice(2);
if (!transport || !url || !scope || !source || (point !== 'in-handler' && point !== 'before-ack')) {
  throw new Error('usage: consumer-child.ts <amqplib|nats> <url> <scope> <source> <point>');
}

const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
});
const hang = () => new Promise<never>(() => setInterval(() => undefined, 1000));
const stopAt = (here: typeof point) => {
  if (point !== here) return;
  process.stdout.write(`${here}\n`);
  return hang();
};
const onDeadLetter = () => {
  throw new Error('no message is dead-lettered in the crash tests');
};

if (transport === 'amqplib') {
  const connection = await openAmqp();
  const channel = await connection.createChannel();
  // The acknowledgement is where the process stops: after the commit, before the broker hears.
  const settle = {
    ack: () => void stopAt('before-ack'),
    nack: channel.nack.bind(channel),
  };
  const handle = idempotentAmqpHandler(db, settle, {
    scope,
    onDeadLetter,
    handler: async (trx, message) => {
      const response = await createPayment(scope, String(message.properties.messageId))(trx);
      await stopAt('in-handler');
      return response;
    },
  });
  await channel.prefetch(1);
  await channel.consume(source, (message) => {
    if (message) handle(message).catch((error) => console.error(error));
  });
} else {
  const nc = await openNats();
  const consumer = await jetstream(nc).consumers.get(source, 'worker');
  const handle = idempotentJetStreamHandler(db, {
    scope,
    onDeadLetter,
    handler: async (trx, message) => {
      const response = await createPayment(scope, message.headers?.get('Nats-Msg-Id') ?? '')(trx);
      await stopAt('in-handler');
      return response;
    },
  });
  const message = await consumer.next({ expires: 10_000 });
  if (!message) throw new Error('no message arrived within 10 s');
  // Every property is the message's own, except ack(): that is where the process stops.
  const stopping = new Proxy(message, {
    get(target, property) {
      if (property === 'ack') return () => void stopAt('before-ack');
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  await handle(stopping);
}
