// The transactional outbox (`--only outbox`), from both ends:
//
// - Producers: the cost of enqueueing. c workers each make one withIdempotency call that inserts
//   a charge (the baseline), the same call that also enqueues a 210-byte message on one of 50
//   streams, and on a single stream (where producers take the stream's counter row in turn,
//   each until it commits: the price of commit order).
// - The relay: messages per second from the outbox to a RabbitMQ queue (publisher confirms),
//   against publishing the same messages straight from the process with the same confirms and
//   the same order constraint (one unconfirmed message per stream; at most the relay's
//   concurrency in flight). The messages are enqueued before the timing.
//
// Cells are interleaved and repeated; each does a fixed count of fresh operations.
import { randomBytes, randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { connect } from 'amqplib';
import type { Kysely } from 'kysely';
import { type BenchDB, insertCharge, newChargeRequest } from './business.ts';
import { importBuilt, withIdempotency } from './library.ts';
import { type CellRun, measure, timed } from './measure.ts';

type Outbox = typeof import('../src/outbox/index.ts');
type OutboxAmqp = typeof import('../src/outbox/amqplib/index.ts');

const SCOPE = 'bench-outbox';
/** The relay's default concurrency: streams published at once. */
const RELAY_CONCURRENCY = 4;
const PRODUCER_CONCURRENCY = 4;

export type OutboxVariant =
  | 'ledger'
  | 'ledger+outbox, 50 streams'
  | 'ledger+outbox, 1 stream'
  | 'publish, 1 stream'
  | 'relay, 1 stream'
  | 'publish, 50 streams'
  | 'relay, 50 streams';

export interface OutboxSettings {
  repetitions: number;
  /** Operations (calls, or messages) per cell and repetition; half that in the warm-up. */
  count: number;
}

export interface OutboxCell {
  variant: OutboxVariant;
  runs: CellRun[];
}

export const OUTBOX_VARIANTS: readonly OutboxVariant[] = [
  'ledger',
  'ledger+outbox, 50 streams',
  'ledger+outbox, 1 stream',
  'publish, 1 stream',
  'relay, 1 stream',
  'publish, 50 streams',
  'relay, 50 streams',
];

export async function runOutbox(
  db: Kysely<BenchDB>,
  settings: OutboxSettings,
  progress: (line: string) => void,
): Promise<OutboxCell[] | { skipped: string }> {
  const outbox = await importBuilt<Outbox>('outbox/index.js');
  const { amqpPublisher } = await importBuilt<OutboxAmqp>('outbox/amqplib/index.js');
  let connection: ChannelModel;
  try {
    connection = await connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  } catch (error) {
    return { skipped: `RabbitMQ does not answer (${(error as Error).message}); set AMQP_URL` };
  }
  try {
    const channel = await connection.createConfirmChannel();
    // Exclusive: the server deletes it with the connection, whatever happens to this process.
    const queue = `bench-outbox-${randomBytes(4).toString('hex')}`;
    await channel.assertQueue(queue, { exclusive: true, durable: false });
    const enqueueCall = (streams: number) => (worker: number, i: number) =>
      withIdempotency(db, { scope: SCOPE, key: randomUUID() }, async (trx) => {
        const response = await insertCharge(trx, newChargeRequest());
        await outbox.enqueueMessage(trx, {
          stream: `customer-${(worker * 7919 + i) % streams}`,
          topic: 'charge.created',
          payload: response.body,
        });
        return response;
      });
    const runners: Record<OutboxVariant, (count: number) => Promise<CellRun>> = {
      ledger: (count) =>
        produce(count, () =>
          withIdempotency(db, { scope: SCOPE, key: randomUUID() }, (trx) =>
            insertCharge(trx, newChargeRequest()),
          ),
        ),
      'ledger+outbox, 50 streams': (count) => produce(count, enqueueCall(50)),
      'ledger+outbox, 1 stream': (count) => produce(count, enqueueCall(1)),
      'publish, 1 stream': (count) => publishDirectly(channel, queue, count, 1),
      'publish, 50 streams': (count) => publishDirectly(channel, queue, count, RELAY_CONCURRENCY),
      'relay, 1 stream': (count) => relay(count, 1),
      'relay, 50 streams': (count) => relay(count, 50),
    };

    async function relay(count: number, streams: number): Promise<CellRun> {
      await db.transaction().execute(async (trx) => {
        await outbox.enqueueMessages(
          trx,
          Array.from({ length: count }, (_, i) => ({
            stream: `relay-${i % streams}`,
            topic: 'charge.created',
            payload: chargeBody(),
          })),
        );
      });
      const relayer = outbox.createOutboxRelay(db, {
        publish: amqpPublisher(channel, { exchange: '', routingKey: () => queue }),
        concurrency: RELAY_CONCURRENCY,
      });
      const run = await measure(async (latencies) => {
        let published = 0;
        while (published < count) {
          const started = performance.now();
          const pass = await relayer.relayOnce();
          if (pass.failed > 0) throw new Error(`the relay failed ${pass.failed} publishes`);
          const perMessage = (performance.now() - started) / (pass.published || 1);
          for (let i = 0; i < pass.published; i++) latencies.push(perMessage);
          published += pass.published;
        }
      });
      await relayer.stop();
      await channel.purgeQueue(queue);
      return run;
    }

    const cells: OutboxCell[] = OUTBOX_VARIANTS.map((variant) => ({ variant, runs: [] }));
    progress(`outbox warm-up: ${cells.length} cells x ${settings.count / 2}`);
    for (const cell of cells) await runners[cell.variant](settings.count / 2);
    for (let rep = 0; rep < settings.repetitions; rep++) {
      progress(`outbox ${rep + 1}/${settings.repetitions}: ${cells.length} cells`);
      for (let i = 0; i < cells.length; i++) {
        const cell = cells[(i + rep) % cells.length] as OutboxCell;
        cell.runs.push(await runners[cell.variant](settings.count));
      }
    }
    return cells;
  } finally {
    await connection.close();
  }
}

/** A charge's body as the producers enqueue it: the same 210-byte response body. */
function chargeBody() {
  return {
    id: randomUUID(),
    object: 'charge',
    amount: 1999,
    currency: 'eur',
    pad: 'x'.repeat(100),
  };
}

/** `count` calls of `op`, PRODUCER_CONCURRENCY workers taking the next one in turn. */
function produce(count: number, op: (worker: number, i: number) => Promise<unknown>) {
  let next = 0;
  return measure(async (latencies) => {
    await Promise.all(
      Array.from({ length: PRODUCER_CONCURRENCY }, async (_, worker) => {
        for (let i = next++; i < count; i = next++) await timed(latencies, () => op(worker, i));
      }),
    );
  });
}

/**
 * The baseline of the relay: the same messages published from memory, `inFlight` unconfirmed at
 * most (one per stream, as the relay does), each waited for before its stream's next.
 */
function publishDirectly(channel: ConfirmChannel, queue: string, count: number, inFlight: number) {
  let next = 0;
  return measure(async (latencies) => {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        for (let i = next++; i < count; i = next++) {
          await timed(latencies, async () => {
            const body = Buffer.from(JSON.stringify(chargeBody()));
            await new Promise<void>((resolve, reject) => {
              channel.sendToQueue(
                queue,
                body,
                { messageId: randomUUID(), persistent: true },
                (error) => (error ? reject(error) : resolve()),
              );
            });
          });
        }
      }),
    );
  }).finally(() => channel.purgeQueue(queue));
}
