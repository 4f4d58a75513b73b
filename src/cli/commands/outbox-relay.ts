import { createOutboxRelay, type OutboxMessage } from '../../outbox/index.ts';
import { CliError, EXIT_FAILURE, EXIT_OK, usageError } from '../shared/cli-error.ts';
import {
  CONNECTION_FLAGS,
  CONNECTION_FLAGS_USAGE,
  connectionSettings,
} from '../shared/connection-flags.ts';
import { passwordsIn, readDatabaseUrl } from '../shared/database-url.ts';
import { type CommandContext, defineCommand } from '../shared/define-command.ts';
import { describeError } from '../shared/describe-error.ts';
import { integerFlag, MAX_TIMER_MS } from '../shared/integer-flag.ts';
import {
  type OpenedPublisher,
  openAmqpPublisher,
  openJetStreamPublisher,
} from '../shared/outbox-publisher.ts';
import { redact } from '../shared/redact.ts';
import { withDatabase } from '../shared/with-database.ts';

const RELAY_FLAGS = {
  ...CONNECTION_FLAGS,
  'amqp-url': { type: 'string' },
  exchange: { type: 'string' },
  'nats-url': { type: 'string' },
  'batch-size': { type: 'string' },
  concurrency: { type: 'string' },
  'poll-interval-ms': { type: 'string' },
  'max-attempts': { type: 'string' },
  'lease-ms': { type: 'string' },
  'publish-timeout-ms': { type: 'string' },
} as const;

/**
 * `idempotency-ledger outbox relay`: {@link createOutboxRelay} with the publisher of RabbitMQ
 * (`--amqp-url`) or NATS JetStream (`--nats-url`), until SIGINT/SIGTERM, which stop it once the
 * publishes in flight are confirmed and recorded.
 *
 * @example
 * ```ts
 * const code = await outboxRelayCommand.run(['--nats-url', 'nats://127.0.0.1:4222'], context);
 * ```
 */
export const outboxRelayCommand = defineCommand({
  name: 'outbox relay',
  summary: 'publish the outbox to RabbitMQ or NATS JetStream until SIGINT/SIGTERM',
  usage: `Usage: idempotency-ledger outbox relay (--amqp-url URL [--exchange NAME] | --nats-url URL)
                                    [--batch-size N] [--concurrency N] [--poll-interval-ms N]
                                    [--max-attempts N] [--lease-ms N] [--publish-timeout-ms N]
                                    [--schema NAME] [--connect-timeout-ms N]

Publishes the messages of the outbox, each stream in order, and deletes each once the broker
confirmed it, until SIGINT/SIGTERM. Run as many as you like: a stream is published by one relay
at a time. To RabbitMQ: persistent, messageId = the outbox message id, on a confirm channel, to
--exchange (default: the default exchange) with the message's topic as routing key; the
connection is opened again after it was lost; a message no queue takes is returned by the broker
and counts as a failed publish. To NATS JetStream: to the message's topic as
subject, with Nats-Msg-Id = the outbox message id; the client reconnects by itself.

  --amqp-url URL           RabbitMQ, e.g. amqp://user:pass@host:5672 (needs amqplib)
  --exchange NAME          the exchange to publish to, with --amqp-url
  --nats-url URL           NATS with JetStream, e.g. nats://host:4222 (needs @nats-io/jetstream
                           and @nats-io/transport-node)
  --batch-size N           messages per stream and pass (default 100)
  --concurrency N          streams published at the same time (default 4)
  --poll-interval-ms N     pause after a pass that found nothing (default 1000)
  --max-attempts N         park a message after N failed publishes: it blocks its stream until
                           \`outbox release --stream S\` (default: retried for as long as it fails)
  --lease-ms N             how long a relay holds a stream without renewing (default 30000)
  --publish-timeout-ms N   a publish not confirmed by then fails (default 10000; shorter than
                           --lease-ms)
${CONNECTION_FLAGS_USAGE}

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 the broker or the database could not be reached at
the start; 2 wrong arguments or DATABASE_URL. Failed publishes are printed and retried (or, with
--max-attempts, parked).
`,
  flags: RELAY_FLAGS,
  async run(flags, context) {
    const { schema, connectTimeoutMs } = connectionSettings(flags);
    const batchSize = integerFlag('batch-size', flags['batch-size'], { min: 1, max: 10_000 });
    const concurrency = integerFlag('concurrency', flags.concurrency, { min: 1, max: 100 });
    const pollIntervalMs = integerFlag('poll-interval-ms', flags['poll-interval-ms'], {
      min: 1,
      max: MAX_TIMER_MS,
    });
    // Ranges and how they relate (publish timeout against lease) are createOutboxRelay's to check.
    const maxAttempts = integerFlag('max-attempts', flags['max-attempts'], {
      min: 1,
      max: 2_147_483_647,
    });
    const leaseMs = integerFlag('lease-ms', flags['lease-ms'], { min: 1, max: MAX_TIMER_MS });
    const publishTimeoutMs = integerFlag('publish-timeout-ms', flags['publish-timeout-ms'], {
      min: 1,
      max: MAX_TIMER_MS,
    });
    const amqpUrl = flags['amqp-url'];
    const natsUrl = flags['nats-url'];
    if ((amqpUrl === undefined) === (natsUrl === undefined)) {
      throw usageError('give one broker: --amqp-url or --nats-url');
    }
    if (flags.exchange !== undefined && amqpUrl === undefined) {
      throw usageError('--exchange applies only with --amqp-url');
    }
    const connectionString = readDatabaseUrl(context.env);
    // The broker's password stays out of standard error, as DATABASE_URL's does.
    const secrets = passwordsIn(amqpUrl ?? natsUrl);
    const guarded = { ...context, stderr: (text: string) => context.stderr(redact(text, secrets)) };
    const opened = await openPublisher(amqpUrl, natsUrl, flags.exchange, secrets);
    try {
      const options = {
        ...(schema === undefined ? {} : { schema }),
        ...(batchSize === undefined ? {} : { batchSize }),
        ...(concurrency === undefined ? {} : { concurrency }),
        ...(pollIntervalMs === undefined ? {} : { pollIntervalMs }),
        ...(maxAttempts === undefined ? {} : { maxAttempts }),
        ...(leaseMs === undefined ? {} : { leaseMs }),
        ...(publishTimeoutMs === undefined ? {} : { publishTimeoutMs }),
      };
      const target = {
        connectionString,
        connectTimeoutMs,
        maxConnections: (concurrency ?? 4) + 1,
      };
      const outcome = await withDatabase(target, context, async (db) => {
        const relay = createOutboxRelay(db, {
          ...options,
          publish: counted(opened),
          onError: (error, message) => reportFailure(guarded, error, message),
        });
        relay.start();
        await aborted(context.signal);
        await relay.stop();
      });
      context.stdout(
        outcome.aborted
          ? 'stopped before the first pass\n'
          : `stopped; published ${published.get(opened) ?? 0} messages\n`,
      );
      return EXIT_OK;
    } finally {
      await opened.close();
    }
  },
});

async function openPublisher(
  amqpUrl: string | undefined,
  natsUrl: string | undefined,
  exchange: string | undefined,
  secrets: string[],
): Promise<OpenedPublisher> {
  try {
    return amqpUrl === undefined
      ? await openJetStreamPublisher(natsUrl as string)
      : await openAmqpPublisher(amqpUrl, exchange);
  } catch (error) {
    const broker = amqpUrl === undefined ? 'NATS' : 'RabbitMQ';
    throw new CliError(`cannot connect to ${broker}: ${redact(describeError(error), secrets)}`, {
      exitCode: EXIT_FAILURE,
      cause: error,
    });
  }
}

/** Messages each publisher published (confirmed by the broker). */
const published = new WeakMap<OpenedPublisher, number>();

function counted(opened: OpenedPublisher) {
  return async (message: OutboxMessage) => {
    await opened.publish(message);
    published.set(opened, (published.get(opened) ?? 0) + 1);
  };
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener('abort', () => resolve(), { once: true }),
  );
}

// The stream and position, never the message id: ids are secrets of the caller.
function reportFailure(
  { stderr }: CommandContext,
  error: unknown,
  message: OutboxMessage | undefined,
): void {
  const what =
    message === undefined
      ? 'a pass failed'
      : `publish of stream ${JSON.stringify(message.stream)} position ${message.position} (attempt ${message.attempt}) failed`;
  stderr(`idempotency-ledger outbox relay: ${what}: ${describeError(error)}\n`);
}
