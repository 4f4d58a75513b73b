// The outbox tables: producers against a withIdempotency call without the outbox, and the relay
// against publishing the same messages straight from the process, as ratios from one run.

import { median } from './measure.ts';
import type { OutboxCell, OutboxVariant } from './outbox.ts';
import { int, markdownTable, times } from './report.ts';

export const OUTBOX_NOTES = [
  'Producers: 4 workers, each call one withIdempotency transaction inserting a charge ("ledger"),',
  'and the same call enqueueing a 210-byte message on one of 50 streams, or all on one stream',
  '(whose producers take its counter row in turn until each commits). Relay: messages enqueued',
  'before the timing, published to a RabbitMQ queue with publisher confirms and deleted once',
  'confirmed (createOutboxRelay, amqpPublisher, concurrency 4); "publish": the same messages',
  'sent straight from memory with the same confirms and order (one unconfirmed per stream, at',
  'most 4 in flight). Ratios are per second, against the baseline in the same run; round trips',
  'are pg statements per call or message.',
  '',
].join('\n');

export function outboxTables(cells: OutboxCell[]): string {
  const of = (variant: OutboxVariant) => {
    const runs = cells.find((cell) => cell.variant === variant)?.runs ?? [];
    return {
      perSec: median(runs.map((run) => run.opsPerSec)),
      roundTrips: median(runs.map((run) => run.pgRoundTripsPerOp)),
    };
  };
  const ledger = of('ledger');
  const producers = markdownTable(
    ['producer call', 'calls/s', 'vs ledger', 'round trips/call'],
    (['ledger', 'ledger+outbox, 50 streams', 'ledger+outbox, 1 stream'] as const).map((variant) => {
      const cell = of(variant);
      return [
        variant,
        int(cell.perSec),
        times(cell.perSec / ledger.perSec),
        cell.roundTrips.toFixed(2),
      ];
    }),
    'lrrr',
  );
  const relay = markdownTable(
    ['streams', 'publish, msgs/s', 'relay, msgs/s', 'relay vs publish', 'relay round trips/msg'],
    (['1 stream', '50 streams'] as const).map((streams) => {
      const publish = of(`publish, ${streams}`);
      const relayed = of(`relay, ${streams}`);
      return [
        streams,
        int(publish.perSec),
        int(relayed.perSec),
        times(relayed.perSec / publish.perSec),
        relayed.roundTrips.toFixed(2),
      ];
    }),
    'lrrrr',
  );
  return `${producers}\n\n${relay}`;
}
