// Messages per second through the consumers (`--only messaging`): the same handler (one INSERT
// into `charges`) run (a) in a transaction of its own with no dedupe (the baseline), (b) through
// consumeOnce, one transaction per message, and (c) through consumeBatch, batches of BATCH_SIZE,
// one transaction per batch. Each both through a real RabbitMQ queue (published first, then
// consumed and acknowledged after the commit) and without the broker (direct calls), to tell the
// database's cost from the broker's. Cells are interleaved and repeated; each processes a fixed
// number of fresh messages.
//
// More rows (an outbox relay's throughput) join by adding a runner to MESSAGING_RUNNERS and its
// rows to MESSAGING_CELLS: the loop, the medians and the table take any variant.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { connect } from 'amqplib';
import type { Kysely } from 'kysely';
import { type BenchDB, type ChargeRequest, insertCharge, newChargeRequest } from './business.ts';
import { importBuilt } from './library.ts';
import { type CellRun, measure } from './measure.ts';

type Consumer = typeof import('../src/consumer/index.ts');
type Amqp = typeof import('../src/consumer/amqplib/index.ts');

export const BATCH_SIZE = 50;
const SCOPE = 'bench-messaging';

export type MessagingVariant = 'plain' | 'once' | 'batch';
export type MessagingTransport = 'direct' | 'rabbitmq';

export interface MessagingSettings {
  repetitions: number;
  /** Messages each cell processes per repetition (and half that in the warm-up). */
  messages: number;
}

export interface MessagingCell {
  transport: MessagingTransport;
  variant: MessagingVariant | (string & {});
  /** Direct: workers taking messages (or batches) in turn. RabbitMQ: the channel's prefetch. */
  concurrency: number;
  runs: CellRun[];
}

/** The cells of the section: each variant at each place, one table row per (transport, c). */
export const MESSAGING_CELLS: readonly Omit<MessagingCell, 'runs'>[] = [
  ...(['plain', 'once', 'batch'] as const).flatMap((variant) => [
    { transport: 'direct' as const, variant, concurrency: 1 },
    { transport: 'direct' as const, variant, concurrency: 4 },
    { transport: 'rabbitmq' as const, variant, concurrency: 2 * BATCH_SIZE },
  ]),
];

interface Message {
  id: string;
  request: ChargeRequest;
}

/** Work started for one or more messages; resolves with how many it settled. */
type Work = () => Promise<number>;

type Runner = (cell: Omit<MessagingCell, 'runs'>, messages: Message[]) => Promise<CellRun>;

export async function runMessaging(
  db: Kysely<BenchDB>,
  settings: MessagingSettings,
  progress: (line: string) => void,
): Promise<MessagingCell[] | { skipped: string }> {
  const consumer = await importBuilt<Consumer>('consumer/index.js');
  const amqp = await importBuilt<Amqp>('consumer/amqplib/index.js');
  let connection: ChannelModel;
  try {
    connection = await connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  } catch (error) {
    return { skipped: `RabbitMQ does not answer (${(error as Error).message}); set AMQP_URL` };
  }
  try {
    const publisher = await connection.createConfirmChannel();
    const channel = await connection.createChannel();
    // Exclusive: the server deletes it with the connection, whatever happens to this process.
    const queue = `bench-messaging-${randomBytes(4).toString('hex')}`;
    await channel.assertQueue(queue, { exclusive: true, durable: false });
    const direct = directRunners(db, consumer);
    const broker = brokerRunners(db, amqp, { channel, publisher, queue });
    const runners: Record<MessagingTransport, Record<string, Runner>> = {
      direct,
      rabbitmq: broker,
    };
    const cells: MessagingCell[] = MESSAGING_CELLS.map((cell) => ({ ...cell, runs: [] }));
    const runCell = (cell: MessagingCell, count: number) => {
      const runner = runners[cell.transport][cell.variant];
      if (!runner) throw new Error(`no runner for ${cell.transport} ${cell.variant}`);
      return runner(cell, freshMessages(count));
    };
    progress(`messaging warm-up: ${cells.length} cells x ${settings.messages / 2} messages`);
    for (const cell of cells) await runCell(cell, settings.messages / 2);
    for (let rep = 0; rep < settings.repetitions; rep++) {
      progress(`messaging ${rep + 1}/${settings.repetitions}: ${cells.length} cells`);
      for (let i = 0; i < cells.length; i++) {
        const cell = cells[(i + rep) % cells.length] as MessagingCell;
        cell.runs.push(await runCell(cell, settings.messages));
      }
    }
    return cells;
  } finally {
    await connection.close();
  }
}

function freshMessages(count: number): Message[] {
  return Array.from({ length: count }, () => ({ id: randomUUID(), request: newChargeRequest() }));
}

const onDeadLetter = () => {
  throw new Error('no message is dead-lettered in the benchmark');
};

function directRunners(db: Kysely<BenchDB>, consumer: Consumer): Record<MessagingVariant, Runner> {
  const options = { scope: SCOPE, onDeadLetter };
  // Workers take the next message (or the next batch) until none is left: one op is one message.
  const inTurn = (
    concurrency: number,
    messages: Message[],
    size: number,
    op: (slice: Message[]) => Promise<void>,
  ) =>
    measure(async (latencies) => {
      let next = 0;
      const worker = async () => {
        while (next < messages.length) {
          const slice = messages.slice(next, next + size);
          next += size;
          const started = performance.now();
          await op(slice);
          const perMessage = (performance.now() - started) / slice.length;
          for (const _ of slice) latencies.push(perMessage);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    });
  return {
    plain: (cell, messages) =>
      inTurn(cell.concurrency, messages, 1, async ([message]) => {
        await db.transaction().execute((trx) => insertCharge(trx, (message as Message).request));
      }),
    once: (cell, messages) =>
      inTurn(cell.concurrency, messages, 1, async ([message]) => {
        const { id, request } = message as Message;
        const result = await consumer.consumeOnce(
          db,
          options,
          { message: request, messageId: id, attempt: 1 },
          (trx, body) => insertCharge(trx, body),
        );
        expectProcessed([result]);
      }),
    batch: (cell, messages) =>
      inTurn(cell.concurrency, messages, BATCH_SIZE, async (slice) => {
        const deliveries = slice.map(({ id, request }) => ({
          message: request,
          messageId: id,
          attempt: 1,
        }));
        expectProcessed(
          await consumer.consumeBatch(db, options, deliveries, (trx, body) =>
            insertCharge(trx, body),
          ),
        );
      }),
  };
}

function expectProcessed(results: readonly { outcome: string }[]): void {
  if (results.some((result) => result.outcome !== 'processed')) {
    throw new Error(`a fresh message was not processed: ${results.map((r) => r.outcome)}`);
  }
}

interface Broker {
  channel: Channel;
  publisher: ConfirmChannel;
  queue: string;
}

function brokerRunners(
  db: Kysely<BenchDB>,
  amqp: Amqp,
  broker: Broker,
): Record<MessagingVariant, Runner> {
  const { channel } = broker;
  const body = (message: ConsumeMessage) => JSON.parse(message.content.toString()) as ChargeRequest;
  const options = { scope: SCOPE, onDeadLetter };
  return {
    plain: (cell, messages) =>
      consumeAll(broker, cell.concurrency, messages, (message) => async () => {
        await db.transaction().execute((trx) => insertCharge(trx, body(message)));
        channel.ack(message);
        return 1;
      }),
    once: (cell, messages) => {
      const handle = amqp.idempotentAmqpHandler(db, channel, {
        ...options,
        handler: (trx, message) => insertCharge(trx, body(message)),
      });
      return consumeAll(broker, cell.concurrency, messages, (message) => async () => {
        expectProcessed([await handle(message)]);
        return 1;
      });
    },
    batch: (cell, messages) => {
      // Messages gather into a batch of BATCH_SIZE, or what arrived once none came for
      // LINGER_MS; idempotentAmqpBatchHandler acknowledges each after the batch's commit.
      let gathering: ConsumeMessage[] = [];
      const handle = amqp.idempotentAmqpBatchHandler(db, channel, {
        ...options,
        handler: (trx, message) => insertCharge(trx, body(message)),
      });
      const flush = async () => {
        const batch = gathering;
        gathering = [];
        expectProcessed(await handle(batch));
        return batch.length;
      };
      return consumeAll(
        broker,
        cell.concurrency,
        messages,
        (message) => {
          gathering.push(message);
          return gathering.length >= BATCH_SIZE ? flush : undefined;
        },
        () => (gathering.length > 0 ? flush : undefined),
      );
    },
  };
}

/** How long a partial batch waits for more messages before it is processed as it is. */
const LINGER_MS = 5;

/**
 * Publishes the messages (confirmed, outside the timing), then consumes them with `prefetch` and
 * times until every one is settled. `onMessage` returns the work a message starts (or none, while
 * a batch gathers); `onIdle`, called once the delivered messages are all taken, may start more.
 * The work resolves after it acknowledged its messages, with how many.
 */
async function consumeAll(
  broker: Broker,
  prefetch: number,
  messages: Message[],
  onMessage: (message: ConsumeMessage) => Work | undefined,
  onIdle: () => Work | undefined = () => undefined,
): Promise<CellRun> {
  const { channel, publisher, queue } = broker;
  for (const { id, request } of messages) {
    publisher.sendToQueue(queue, Buffer.from(JSON.stringify(request)), { messageId: id });
  }
  await publisher.waitForConfirms();
  await channel.prefetch(prefetch);
  return measure(async (latencies) => {
    let settled = 0;
    let failed: unknown;
    let idleCheck: NodeJS.Timeout | undefined;
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const start = (work: Work) => {
      const started = performance.now();
      work().then(
        (n) => {
          const perMessage = (performance.now() - started) / n;
          for (let i = 0; i < n; i++) latencies.push(perMessage);
          settled += n;
          if (settled >= messages.length) done();
        },
        (error: unknown) => {
          failed = error;
          done();
        },
      );
    };
    const { consumerTag } = await channel.consume(queue, (message) => {
      if (!message) return;
      const work = onMessage(message);
      if (work) start(work);
      if (idleCheck) clearTimeout(idleCheck);
      idleCheck = setTimeout(() => {
        const more = onIdle();
        if (more) start(more);
      }, LINGER_MS);
    });
    await finished;
    clearTimeout(idleCheck);
    await channel.cancel(consumerTag);
    if (failed) throw failed;
  });
}
