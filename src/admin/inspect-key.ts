import { type Kysely, sql } from 'kysely';
import { keyRefSchema, parseAdminOptions } from './admin-options.ts';
import { type Executor, runAdmin } from './admin-sql.ts';

/** A ledger entry as {@link inspectKey} describes it: everything but the response itself. */
export type EntryInspection =
  | { state: 'absent' }
  | {
      /** `live` replays; `expired` is new again to `withIdempotency` (cleanup has not run yet). */
      state: 'live' | 'expired';
      createdAt: Date;
      expiresAt: Date;
      /** Milliseconds until it expires, by the database clock; negative once it has. */
      expiresInMs: number;
      /** SHA-256 of the request's canonical JSON, in hex; null when no request was given. */
      fingerprint: string | null;
      /**
       * Bytes of the stored text (with encryption, of the encrypted form); null when `fn`
       * returned nothing and it is stored in clear.
       */
      responseBytes: number | null;
    };

/** A step an operation recorded, without its result. */
export interface StepInspection {
  name: string;
  /**
   * Bytes of the stored result (with encryption, of the encrypted form); null for a step that
   * returned nothing, stored in clear.
   */
  resultBytes: number | null;
  recordedAt: Date;
  /** The fencing token of the attempt that recorded it. */
  fencingToken: string;
}

/** An operation (`idempotency-ledger/operations`) as {@link inspectKey} describes it. */
export interface OperationInspection {
  name: string;
  /** `expired`: finished, past its expiry: the key is new again (cleanup has not run yet). */
  state: 'in_progress' | 'finished' | 'expired';
  attempts: number;
  fencingToken: string;
  /** Milliseconds of lease left (0 once it ran out); null when no attempt holds it. */
  leaseRemainingMs: number | null;
  createdAt: Date;
  updatedAt: Date;
  /** When a finished operation stops replaying; null while in progress. */
  expiresAt: Date | null;
  fingerprint: string | null;
  /** Bytes of the stored final response (with encryption, its encrypted form); null until it finishes. */
  responseBytes: number | null;
  steps: StepInspection[];
}

/** Options of {@link inspectKey}. */
export interface InspectKeyOptions {
  scope: string;
  /** The idempotency key, as the caller sent it. */
  key: string;
  /** Postgres schema that holds the ledger (the one you migrated). Default `idempotency`. */
  schema?: string;
}

/** What {@link inspectKey} found for one (scope, key). */
export interface KeyInspection {
  scope: string;
  key: string;
  entry: EntryInspection;
  /** null when no operation uses the key. */
  operation: OperationInspection | null;
}

/**
 * Describes what the ledger holds for one (scope, key): the entry's state, times, fingerprint and
 * response size, and the operation of that key with its lease and steps. Times left are measured
 * with the database clock. It never reads a response, request or step result out of the
 * database: only their sizes. Reads only; takes no lock.
 *
 * @throws {InvalidIdempotencyOptionsError} for an empty scope or key, or an unknown option.
 * @throws {LedgerSchemaError} when the ledger is not migrated into `schema`; or
 *   (`problem: 'unsupported'`) when the database is not UTF-8 and cannot hold the scope or key.
 *
 * @example
 * ```ts
 * const { entry, operation } = await inspectKey(db, { scope: 'merchant:42', key: 'order-7' });
 * if (entry.state === 'live') console.log(`replays for ${entry.expiresInMs} ms more`);
 * ```
 */
export async function inspectKey<DB>(
  db: Kysely<DB>,
  options: InspectKeyOptions,
): Promise<KeyInspection> {
  const { scope, key, schema } = parseAdminOptions(keyRefSchema, options, 'inspectKey');
  return runAdmin(db as Kysely<unknown>, schema, async (executor) => {
    const entry = await readEntry(executor, schema, scope, key);
    const operation = await readOperation(executor, schema, scope, key);
    return { scope, key, entry, operation };
  });
}

async function readEntry(
  executor: Executor,
  schema: string,
  scope: string,
  key: string,
): Promise<EntryInspection> {
  const { rows } = await sql<{
    live: boolean;
    created_at: Date;
    expires_at: Date;
    expires_in_ms: number;
    fingerprint: string | null;
    response_bytes: number | null;
  }>`
    select l.expires_at > clock_timestamp() as live, l.created_at, l.expires_at,
           (extract(epoch from l.expires_at - clock_timestamp()) * 1000)::float8 as expires_in_ms,
           encode(l.fingerprint, 'hex') as fingerprint,
           octet_length(l.response::text) as response_bytes
      from ${sql.id(schema, 'ledger')} l
     where l.scope = ${scope} and l.key = ${key}`.execute(executor);
  const row = rows[0];
  if (row === undefined) return { state: 'absent' };
  return {
    state: row.live ? 'live' : 'expired',
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    expiresInMs: row.expires_in_ms,
    fingerprint: row.fingerprint,
    responseBytes: row.response_bytes,
  };
}

async function readOperation(
  executor: Executor,
  schema: string,
  scope: string,
  key: string,
): Promise<OperationInspection | null> {
  const { rows } = await sql<{
    name: string;
    state: 'in_progress' | 'finished';
    expired: boolean;
    attempts: number;
    fencing_token: string;
    lease_remaining_ms: number | null;
    created_at: Date;
    updated_at: Date;
    expires_at: Date | null;
    fingerprint: string | null;
    response_bytes: number | null;
    steps: { name: string; resultBytes: number | null; recordedAt: string; fencingToken: string }[];
  }>`
    select o.name, o.state, coalesce(o.expires_at <= clock_timestamp(), false) as expired,
           o.attempts, o.fencing_token::text as fencing_token,
           -- greatest() skips nulls: without the case, a released lease would read as 0 left.
           case when o.lease_expires_at is not null then
             greatest(0, extract(epoch from o.lease_expires_at - clock_timestamp()) * 1000)::float8
           end as lease_remaining_ms,
           o.created_at, o.updated_at, o.expires_at,
           encode(o.fingerprint, 'hex') as fingerprint,
           octet_length(o.response::text) as response_bytes,
           coalesce((select json_agg(json_build_object(
                               'name', s.step,
                               'resultBytes', octet_length(s.result::text),
                               'recordedAt', s.recorded_at,
                               'fencingToken', s.fencing_token::text)
                             order by s.recorded_at, s.step)
                       from ${sql.id(schema, 'operation_steps')} s
                      where s.scope = o.scope and s.key = o.key), '[]') as steps
      from ${sql.id(schema, 'operations')} o
     where o.scope = ${scope} and o.key = ${key}`.execute(executor);
  const row = rows[0];
  if (row === undefined) return null;
  return {
    name: row.name,
    state: row.expired ? 'expired' : row.state,
    attempts: row.attempts,
    fencingToken: row.fencing_token,
    leaseRemainingMs: row.lease_remaining_ms,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expiresAt: row.expires_at,
    fingerprint: row.fingerprint,
    responseBytes: row.response_bytes,
    steps: row.steps.map((step) => ({ ...step, recordedAt: new Date(step.recordedAt) })),
  };
}
