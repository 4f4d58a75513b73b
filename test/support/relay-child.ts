/**
 * An outbox relay process for the crash tests: it publishes the outbox of <databaseUrl> with the
 * publisher of <transport>, and when the broker has confirmed the message at position
 * OUTBOX_CRASH_AFTER_CONFIRM_POSITION, before the relay deletes it from the outbox, it prints
 * "confirmed" and stops there, to be SIGKILLed. Its leases last 500 ms, so that the next relay
 * takes the stream over soon after the kill.
 *
 * Usage: OUTBOX_CRASH_AFTER_CONFIRM_POSITION=3 node relay-child.ts <amqplib|nats> <databaseUrl>
 */
import { jetstream } from '@nats-io/jetstream';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { amqpPublisher } from '../../src/outbox/amqplib/index.ts';
import { createOutboxRelay, type OutboxMessage } from '../../src/outbox/index.ts';
import { jetStreamPublisher } from '../../src/outbox/nats/index.ts';
import { openAmqp, openNats } from './brokers.ts';

const [transport, url] = process.argv.slice(2);
const crashAt = Number(process.env.OUTBOX_CRASH_AFTER_CONFIRM_POSITION);
if ((transport !== 'amqplib' && transport !== 'nats') || !url || !Number.isInteger(crashAt)) {
  throw new Error(
    'usage: OUTBOX_CRASH_AFTER_CONFIRM_POSITION=N relay-child.ts <amqplib|nats> <databaseUrl>',
  );
}

const db = new Kysely<unknown>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }),
});
const publish =
  transport === 'amqplib'
    ? amqpPublisher(await (await openAmqp()).createConfirmChannel())
    : jetStreamPublisher(jetstream(await openNats()));

const hang = () => new Promise<never>(() => setInterval(() => undefined, 1000));
const relay = createOutboxRelay(db, {
  leaseMs: 500,
  publishTimeoutMs: 250,
  pollIntervalMs: 10,
  publish: async (message: OutboxMessage) => {
    await publish(message);
    if (message.position === crashAt) {
      process.stdout.write('confirmed\n');
      await hang();
    }
  },
});
relay.start();
