import { sql } from 'kysely';
import { z } from 'zod';
import { DEFAULT_OUTBOX_SCHEMA, parseOutboxInput } from './outbox-options.ts';
import { schemaName, streamName } from './outbox-schemas.ts';
import type { AnyKysely } from './outbox-store.ts';

/** One stream with messages waiting, as {@link outboxStatus} reports it. */
export interface OutboxStreamStatus {
  stream: string;
  /** Messages not published yet. */
  pending: number;
  /** Age of its oldest message, by the database clock. */
  oldestAgeMs: number;
  /**
   * `'parked'`: its first message failed `maxAttempts` times and blocks the stream until
   * {@link releaseParkedMessage}; `'failing'`: its first message failed and is retried after a
   * backoff; `'pending'`: waiting for a relay.
   */
  state: 'pending' | 'failing' | 'parked';
  /** Failed publishes of its first message. */
  headAttempts: number;
  /** The error of the last failed publish of its first message, cut short. */
  lastError: string | null;
  /** The relay instance that holds the stream now (host:pid:uuid), or null. */
  relay: string | null;
}

const statusOptionsSchema = z.strictObject({
  schema: schemaName.default(DEFAULT_OUTBOX_SCHEMA),
  limit: z.int().min(1).max(100_000).default(1000),
});

/**
 * The streams that have messages waiting, parked ones first, then the oldest.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options.
 *
 * @example
 * ```ts
 * const blocked = (await outboxStatus(db)).filter((s) => s.state === 'parked');
 * ```
 */
export async function outboxStatus(
  db: AnyKysely,
  options: { schema?: string; limit?: number } = {},
): Promise<OutboxStreamStatus[]> {
  const { schema, limit } = parseOutboxInput(statusOptionsSchema, options, 'outboxStatus options');
  const outbox = sql.id(schema, 'outbox');
  const { rows } = await sql<{
    stream: string;
    pending: string;
    oldest_age_ms: number;
    attempts: number;
    last_error: string | null;
    parked: boolean;
    relay: string | null;
  }>`
    select s.stream, s.pending, s.oldest_age_ms, h.attempts, h.last_error,
           h.parked_at is not null as parked, l.holder as relay
      from (select stream, count(*) as pending,
                   (extract(epoch from now() - min(created_at)) * 1000)::float8 as oldest_age_ms
              from ${outbox} group by stream) s
     cross join lateral (
       select o.attempts, o.last_error, o.parked_at from ${outbox} o
        where o.stream = s.stream order by o.position limit 1) h
      left join ${sql.id(schema, 'outbox_leases')} l
        on l.stream = s.stream and l.expires_at > now()
     order by h.parked_at is null, s.oldest_age_ms desc, s.stream
     limit ${limit}`.execute(db);
  return rows.map((row) => ({
    stream: row.stream,
    pending: Number(row.pending),
    oldestAgeMs: Math.max(0, row.oldest_age_ms),
    state: row.parked ? 'parked' : row.attempts > 0 ? 'failing' : 'pending',
    headAttempts: row.attempts,
    lastError: row.last_error,
    relay: row.relay,
  }));
}

const releaseOptionsSchema = z.strictObject({
  stream: streamName,
  schema: schemaName.default(DEFAULT_OUTBOX_SCHEMA),
});

/**
 * Unblocks a stream whose first message was parked: the message is retried at once, its attempts
 * counted from zero again. Resolves to whether a parked message was found.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options.
 *
 * @example
 * ```ts
 * await releaseParkedMessage(db, { stream: 'order-42' }); // after fixing the exchange's bindings
 * ```
 */
export async function releaseParkedMessage(
  db: AnyKysely,
  options: { stream: string; schema?: string },
): Promise<boolean> {
  const { stream, schema } = parseOutboxInput(
    releaseOptionsSchema,
    options,
    'releaseParkedMessage options',
  );
  const { rows } = await sql`
    update ${sql.id(schema, 'outbox')}
       set parked_at = null, attempts = 0, next_attempt_at = now()
     where stream = ${stream} and parked_at is not null
    returning position`.execute(db);
  return rows.length > 0;
}
