import type { OutboxMessage } from '../../outbox/index.ts';

/** A publisher the relay command opened, and how to close its connection. */
export interface OpenedPublisher {
  publish: (message: OutboxMessage) => Promise<void>;
  close(): Promise<void>;
}

/**
 * A publisher to RabbitMQ at `url` that reconnects: the connection is opened on the first publish,
 * and again on the next publish after it closed (a broker restart, a network cut). amqplib and the
 * publisher are imported here, when asked for, so that the command line runs without them.
 *
 * @example
 * ```ts
 * const { publish, close } = await openAmqpPublisher('amqp://guest:guest@127.0.0.1', 'events');
 * ```
 */
export async function openAmqpPublisher(
  url: string,
  exchange: string | undefined,
): Promise<OpenedPublisher> {
  const amqplib = await import('amqplib');
  const { amqpPublisher } = await import('../../outbox/amqplib/index.ts');
  type Connection = Awaited<ReturnType<typeof amqplib.connect>>;
  let connection: Promise<Connection> | undefined;
  const connect = () => {
    if (connection === undefined) {
      const opening = amqplib.connect(url);
      connection = opening;
      opening.then(
        (opened) => {
          // An unhandled 'error' event would end the process; 'close' follows it.
          opened.on('error', () => undefined);
          opened.once('close', () => {
            if (connection === opening) connection = undefined;
          });
        },
        () => {
          if (connection === opening) connection = undefined;
        },
      );
    }
    return connection;
  };
  const publish = amqpPublisher(
    async () => {
      const channel = await (await connect()).createConfirmChannel();
      channel.on('error', () => undefined);
      return channel;
    },
    exchange === undefined ? {} : { exchange },
  );
  // The first connection is opened now, so that a wrong URL fails the command at once.
  await connect();
  return {
    publish,
    async close() {
      const open = connection;
      connection = undefined;
      await (await open?.catch(() => undefined))?.close().catch(() => undefined);
    },
  };
}

/**
 * A publisher to NATS JetStream at `url`; the NATS client reconnects by itself.
 *
 * @example
 * ```ts
 * const { publish, close } = await openJetStreamPublisher('nats://127.0.0.1:4222');
 * ```
 */
export async function openJetStreamPublisher(url: string): Promise<OpenedPublisher> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream } = await import('@nats-io/jetstream');
  const { jetStreamPublisher } = await import('../../outbox/nats/index.ts');
  const nc = await connect({ servers: url, maxReconnectAttempts: -1 });
  return {
    publish: jetStreamPublisher(jetstream(nc)),
    close: () => nc.close(),
  };
}
