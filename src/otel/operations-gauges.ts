import type { Meter } from '@opentelemetry/api';
import { type Kysely, sql } from 'kysely';
import { DEFAULT_SCHEMA } from '../index.ts';
import { METRIC } from './attribute-names.ts';

/** Where {@link observeOperations} reads operations in progress. */
export interface ObservedLedger {
  // biome-ignore lint/suspicious/noExplicitAny: one raw query; table types do not apply.
  db: Kysely<any>;
  /** Postgres schema of the ledger. Default `idempotency`. */
  schema?: string;
}

/**
 * Gauges of the operations in progress, read from the database each time metrics are collected
 * (one query, on the partial index of operations in progress): how many, how many no attempt
 * holds (abandoned: waiting for a retry or the completer), and the age of the oldest.
 * Returns what stops observing.
 */
export function observeOperations(meter: Meter, ledger: ObservedLedger): () => void {
  const schema = ledger.schema ?? DEFAULT_SCHEMA;
  const inProgress = meter.createObservableGauge(METRIC.operationsInProgress, {
    description: 'Operations in progress (started, not finished).',
    unit: '{operation}',
  });
  const abandoned = meter.createObservableGauge(METRIC.operationsAbandoned, {
    description:
      'Operations in progress that no attempt holds: waiting for a retry or the completer.',
    unit: '{operation}',
  });
  const oldestAge = meter.createObservableGauge(METRIC.operationsOldestAge, {
    description: 'Age of the oldest operation in progress (0 when none is).',
    unit: 's',
  });
  const observe = async (observer: { observe(gauge: typeof inProgress, value: number): void }) => {
    // Database time: ages are measured by the clock that wrote created_at.
    const { rows } = await sql<{ in_progress: number; abandoned: number; oldest_s: number }>`
      select count(*)::int as in_progress,
             count(*) filter (where lease_expires_at is null
                                 or lease_expires_at <= clock_timestamp())::int as abandoned,
             coalesce(extract(epoch from clock_timestamp() - min(created_at)), 0)::float8
               as oldest_s
        from ${sql.id(schema, 'operations')}
       where state = 'in_progress'`.execute(ledger.db);
    const row = rows[0];
    if (!row) return;
    observer.observe(inProgress, row.in_progress);
    observer.observe(abandoned, row.abandoned);
    observer.observe(oldestAge, row.oldest_s);
  };
  meter.addBatchObservableCallback(observe, [inProgress, abandoned, oldestAge]);
  return () => meter.removeBatchObservableCallback(observe, [inProgress, abandoned, oldestAge]);
}
