// The messaging table: each consumer against the plain handler (its own transaction, no dedupe)
// at the same place and concurrency, as ratios of messages per second from one run, with the
// database round trips each message cost.

import { median } from './measure.ts';
import { BATCH_SIZE, type MessagingCell } from './messaging.ts';
import { int, markdownTable, times } from './report.ts';

export const MESSAGING_NOTES = [
  'Every message: one `charges` row inserted by the handler. "plain": the handler in a',
  'transaction of its own, no dedupe (the baseline). "consumeOnce": one withIdempotency',
  `transaction per message (idempotentAmqpHandler through RabbitMQ). "consumeBatch": batches of`,
  `${BATCH_SIZE}, one transaction each (idempotentAmqpBatchHandler through RabbitMQ). Direct: no broker, c workers taking the next message (or`,
  'batch). RabbitMQ: messages published (confirmed) before the timing, consumed with prefetch',
  `${2 * BATCH_SIZE} on one channel and acknowledged after the commit; a partial batch waits`,
  '5 ms for more. Ratios are messages/s against "plain" in the same run; round trips are pg',
  'statements per message.',
  '',
].join('\n');

export function messagingTable(cells: MessagingCell[]): string {
  const places = [
    ...new Map(cells.map((cell) => [`${cell.transport}:${cell.concurrency}`, cell])).values(),
  ];
  const rows = places.map(({ transport, concurrency }) => {
    const of = (variant: string) => {
      const cell = cells.find(
        (each) =>
          each.transport === transport &&
          each.concurrency === concurrency &&
          each.variant === variant,
      );
      return {
        perSec: median(cell?.runs.map((run) => run.opsPerSec) ?? []),
        roundTrips: median(cell?.runs.map((run) => run.pgRoundTripsPerOp) ?? []),
      };
    };
    const [plain, once, batch] = [of('plain'), of('once'), of('batch')];
    return [
      transport === 'direct' ? `direct, c=${concurrency}` : `RabbitMQ, prefetch ${concurrency}`,
      int(plain.perSec),
      times(once.perSec / plain.perSec),
      times(batch.perSec / plain.perSec),
      times(batch.perSec / once.perSec),
      [plain, once, batch].map(({ roundTrips }) => roundTrips.toFixed(2)).join(' / '),
    ];
  });
  return markdownTable(
    [
      'where',
      'plain, msgs/s',
      'consumeOnce',
      'consumeBatch',
      'batch vs once',
      'round trips/msg (plain / once / batch)',
    ],
    rows,
    'lrrrrr',
  );
}
