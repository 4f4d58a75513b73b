/**
 * Connections to the real brokers the consumer tests run against: RabbitMQ at AMQP_URL (default
 * amqp://guest:guest@127.0.0.1:5672) and NATS with JetStream at NATS_URL (default
 * nats://127.0.0.1:4222). A broker that does not answer fails the test with a message saying
 * which one and where: these tests never skip.
 */

import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node';
import { type ChannelModel, connect as connectAmqp } from 'amqplib';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** The URL without its credentials, for messages. */
function shown(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString();
}

export async function openAmqp(): Promise<ChannelModel> {
  try {
    return await connectAmqp(AMQP_URL);
  } catch (error) {
    throw new Error(
      `RabbitMQ does not answer at ${shown(AMQP_URL)} (set AMQP_URL): the consumer tests need a real broker`,
      { cause: error },
    );
  }
}

export async function openNats(): Promise<NatsConnection> {
  try {
    return await connectNats({ servers: NATS_URL, timeout: 5000 });
  } catch (error) {
    throw new Error(
      `NATS does not answer at ${shown(NATS_URL)} (set NATS_URL): the consumer tests need a real server with JetStream`,
      { cause: error },
    );
  }
}

/** A queue, stream or subject name no other test uses. */
export function uniqueName(label: string): string {
  return `il-test-${label}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
