/**
 * The only SQL on the outbox tables (migrations/00004-create-outbox.sql explains their design).
 * Every statement stands alone (no transaction is held across a publish), so this works through a
 * transaction pooler. Durations are computed with the database clock.
 */
import { type Kysely, type RawBuilder, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: any database type; the outbox tables are not the caller's.
export type AnyKysely = Kysely<any>;

/** The unique constraint on message ids, as the migration names it. */
export const MESSAGE_ID_CONSTRAINT = 'outbox_message_id_key';

/** A message as the relay reads it. */
export interface StoredMessage {
  messageId: string;
  stream: string;
  position: number;
  topic: string;
  payloadText: string;
  headers: Record<string, string>;
  attempts: number;
  createdAt: Date;
  parked: boolean;
  due: boolean;
}

/** One message to insert, checked and serialised. */
export interface NewMessage {
  stream: string;
  topic: string;
  payloadText: string;
  headers: Record<string, string>;
  messageId: string | undefined;
}

/**
 * Takes the stream's next position and inserts the message, in one statement. The counter row's
 * lock (taken by the upsert) is held until the caller's transaction ends: see the migration.
 */
export async function insertMessage(
  trx: AnyKysely,
  schema: string,
  message: NewMessage,
): Promise<{ messageId: string; position: number }> {
  const { rows } = await sql<{ message_id: string; position: string }>`
    with counter as (
      insert into ${sql.id(schema, 'outbox_streams')} as s (stream, last_position)
      values (${message.stream}, 1)
      on conflict on constraint outbox_streams_pkey
      do update set last_position = s.last_position + 1
      returning s.last_position
    )
    insert into ${sql.id(schema, 'outbox')} (stream, position, message_id, topic, payload, headers)
    select ${message.stream}, counter.last_position,
           coalesce(${message.messageId ?? null}::text, gen_random_uuid()::text),
           ${message.topic}, ${message.payloadText}::json, ${JSON.stringify(message.headers)}::jsonb
      from counter
    returning message_id, position`.execute(trx);
  const row = rows[0];
  if (!row) throw new Error('the outbox insert returned no row');
  return { messageId: row.message_id, position: Number(row.position) };
}

/** What {@link findDueStreams} found, and where the next search starts. */
export interface DueStreams {
  streams: string[];
  /** The last stream looked at, or null when the search reached the last stream. */
  next: string | null;
}

/**
 * Streams after `after` (from the first when null), in stream order, whose first message may be
 * published now: not parked, its backoff over, and no live lease on the stream. The heads are
 * found with one index probe per stream (a recursive skip scan over the primary key), not by
 * reading every message, and the scan stops once it found `limit` due streams or probed
 * `maxProbes` heads: a pass costs what it takes, not one probe per stream of the outbox.
 */
export async function findDueStreams(
  db: AnyKysely,
  schema: string,
  search: { after: string | null; limit: number; maxProbes: number },
): Promise<DueStreams> {
  const outbox = sql.id(schema, 'outbox');
  const head = (after: RawBuilder<unknown>) => sql`
    select o.stream,
           o.parked_at is null and o.next_attempt_at <= now()
             and not exists (select from ${sql.id(schema, 'outbox_leases')} l
                              where l.stream = o.stream and l.expires_at > now()) as due
      from ${outbox} o
     where o.stream > ${after}
     order by o.stream, o.position limit 1`;
  // Every stream name is longer than '', which sorts first byte for byte (COLLATE "C").
  const { rows } = await sql<{ stream: string; due: boolean; probes: number; found: number }>`
    with recursive heads as (
      select first.stream, first.due, 1 as probes, first.due::int as found
        from (${head(sql`${search.after ?? ''}`)}) first
      union all
      select next.stream, next.due, h.probes + 1, h.found + next.due::int
        from heads h
       cross join lateral (${head(sql`h.stream`)}) next
       where h.found < ${search.limit} and h.probes < ${search.maxProbes}
    )
    select stream, due, probes, found from heads
     where due or probes = (select max(probes) from heads)
     order by probes`.execute(db);
  const last = rows.at(-1);
  // The scan ended before its limits: no stream is left after the last one it probed.
  const reachedEnd =
    last === undefined || (last.found < search.limit && last.probes < search.maxProbes);
  return {
    streams: rows.filter((row) => row.due).map((row) => row.stream),
    next: reachedEnd ? null : last.stream,
  };
}

/**
 * Takes the lease of `stream` for `holder` unless a lease on it is live, whoever holds it: a
 * holder is one claim, never reused, so a pass can't take a stream that another pass of the same
 * relay is publishing. Two claims at once: the second statement waits for the first's row, then
 * re-checks the WHERE clause on the lease the first wrote, and takes nothing.
 */
export async function claimStream(
  db: AnyKysely,
  schema: string,
  stream: string,
  holder: string,
  leaseMs: number,
): Promise<boolean> {
  const { rows } = await sql`
    insert into ${sql.id(schema, 'outbox_leases')} as l (stream, holder, expires_at)
    values (${stream}, ${holder}, clock_timestamp() + ${leaseMs} * interval '1 millisecond')
    on conflict on constraint outbox_leases_pkey
    do update set holder = excluded.holder, expires_at = excluded.expires_at
     where l.expires_at <= clock_timestamp()
    returning l.stream`.execute(db);
  return rows.length === 1;
}

/** The first `limit` messages of `stream`, in position order. */
export async function readStream(
  db: AnyKysely,
  schema: string,
  stream: string,
  limit: number,
): Promise<StoredMessage[]> {
  const { rows } = await sql<{
    message_id: string;
    stream: string;
    position: string;
    topic: string;
    payload: string;
    headers: Record<string, string>;
    attempts: number;
    created_at: Date;
    parked: boolean;
    due: boolean;
  }>`
    select message_id, stream, position, topic, payload::text as payload, headers, attempts,
           created_at, parked_at is not null as parked, next_attempt_at <= now() as due
      from ${sql.id(schema, 'outbox')}
     where stream = ${stream}
     order by position
     limit ${limit}`.execute(db);
  return rows.map((row) => ({
    messageId: row.message_id,
    stream: row.stream,
    position: Number(row.position),
    topic: row.topic,
    payloadText: row.payload,
    headers: row.headers,
    attempts: row.attempts,
    createdAt: row.created_at,
    parked: row.parked,
    due: row.due,
  }));
}

/**
 * A CTE body that renews `holder`'s lease on `stream` only while it is live, and returns the
 * stream then. The statement that joins it acts only while this holder holds the stream, and the
 * UPDATE locks the lease row until that statement commits: a relay that claims the stream
 * meanwhile waits for it, then finds the lease renewed and takes nothing. Without the expiry
 * check, a relay that outlived its lease would still act while nobody else had claimed the
 * stream yet, and the next claim would come after its write, not before.
 */
function liveLease(schema: string, stream: string, holder: string, leaseMs: number) {
  return sql`
    update ${sql.id(schema, 'outbox_leases')}
       set expires_at = clock_timestamp() + ${leaseMs} * interval '1 millisecond'
     where stream = ${stream} and holder = ${holder} and expires_at > clock_timestamp()
    returning stream`;
}

/** Extends `holder`'s lease on `stream` while it is live; false when it ran out or was taken. */
export async function renewLease(
  db: AnyKysely,
  schema: string,
  stream: string,
  holder: string,
  leaseMs: number,
): Promise<boolean> {
  const { rows } = await liveLease(schema, stream, holder, leaseMs).execute(db);
  return rows.length === 1;
}

/**
 * Deletes a message whose publish the broker confirmed, only while `holder`'s lease on its stream
 * is live: the lease row is locked until the delete commits, so no relay takes the stream in
 * between. False when the lease ran out or another relay took the stream over: that relay
 * publishes the message again (consumers deduplicate on its id). The lease is not renewed here
 * (the relay renews it before a publish when it might not last): a renewal per message left one
 * dead row version per message in outbox_leases.
 *
 * Committed with synchronous_commit off (set for this statement's own transaction): the relay
 * commits once per message, and waiting for each WAL flush bounded it to the disk's flush rate.
 * A delete that a server crash loses (the last few hundred milliseconds of commits) only means
 * the message is published once more, which at-least-once allows.
 */
export async function deletePublished(
  db: AnyKysely,
  schema: string,
  message: { stream: string; position: number },
  holder: string,
): Promise<boolean> {
  const { rows } = await sql`
    with lease as (
      select stream from ${sql.id(schema, 'outbox_leases')}
       where stream = ${message.stream} and holder = ${holder} and expires_at > clock_timestamp()
         for update
    ),
    no_flush_wait as (select set_config('synchronous_commit', 'off', true))
    delete from ${sql.id(schema, 'outbox')} o using lease, no_flush_wait
     where o.stream = lease.stream and o.position = ${message.position}
    returning o.position`.execute(db);
  return rows.length === 1;
}

/**
 * Counts a failed publish: backoff of `delayMs`, the error kept, and the message parked once it
 * failed `maxAttempts` times (never when `maxAttempts` is null). Only while `holder` holds the
 * stream (its lease renewed). Returns whether the message is now parked, or undefined when the
 * lease was lost.
 */
export async function recordFailure(
  db: AnyKysely,
  schema: string,
  message: { stream: string; position: number },
  failure: {
    holder: string;
    leaseMs: number;
    delayMs: number;
    error: string;
    maxAttempts: number | null;
  },
): Promise<{ parked: boolean } | undefined> {
  const { rows } = await sql<{ parked: boolean }>`
    with lease as (${liveLease(schema, message.stream, failure.holder, failure.leaseMs)})
    update ${sql.id(schema, 'outbox')} o
       set attempts = o.attempts + 1,
           next_attempt_at = clock_timestamp() + ${failure.delayMs} * interval '1 millisecond',
           last_error = ${failure.error},
           parked_at = case when ${failure.maxAttempts}::integer is not null
                             and o.attempts + 1 >= ${failure.maxAttempts}::integer
                            then clock_timestamp() end
      from lease
     where o.stream = lease.stream and o.position = ${message.position}
    returning o.parked_at is not null as parked`.execute(db);
  return rows[0];
}

/**
 * Deletes the counter row of a stream the relay has just emptied, so that streams used once (one
 * per order) leave nothing behind; the next message of the stream starts again at position 1.
 * Only while the counter still reads `lastPosition`, the position of the last message deleted:
 * then no message of the stream is left. A row locked by a producer in flight is skipped
 * (SKIP LOCKED: the relay never waits for a producer), and one a producer updated since is kept,
 * since the condition is checked again on the row the DELETE locks.
 *
 * Only while `holder`'s lease is live, too: a relay that outlived its lease, while another emptied
 * the stream and producers started it again at 1, would otherwise find the counter at
 * `lastPosition` once more, and delete a counter that messages still wait behind (the next
 * message would take position 1 again, ahead of them). The lease row is locked until the
 * statement commits, so no relay takes the stream in between, and goes with the counter row, so
 * that streams used once leave no lease behind either.
 */
export async function deleteIdleCounter(
  db: AnyKysely,
  schema: string,
  counter: { stream: string; lastPosition: number },
  lease: { holder: string },
): Promise<void> {
  const { stream, lastPosition } = counter;
  const streams = sql.id(schema, 'outbox_streams');
  const leases = sql.id(schema, 'outbox_leases');
  await sql`
    with lease as (
      select stream from ${leases}
       where stream = ${stream} and holder = ${lease.holder} and expires_at > clock_timestamp()
         for update
    ),
    counter as (
      delete from ${streams} s using lease
       where s.stream = lease.stream
         and s.ctid = any (array(
               select ctid from ${streams}
                where stream = ${stream} and last_position = ${lastPosition}
                  for update skip locked))
         and s.last_position = ${lastPosition}
      returning s.stream
    )
    delete from ${leases} l using counter where l.stream = counter.stream`.execute(db);
}

/**
 * Gives the stream back, so that any relay may take it at once. The row stays (an update that
 * Postgres can make in place, where a delete and the next claim's insert left dead rows to
 * vacuum); it goes with the counter once the stream is emptied (deleteIdleCounter).
 */
export async function releaseStream(
  db: AnyKysely,
  schema: string,
  stream: string,
  holder: string,
): Promise<void> {
  await sql`
    update ${sql.id(schema, 'outbox_leases')} set expires_at = '-infinity'
     where stream = ${stream} and holder = ${holder}`.execute(db);
}
