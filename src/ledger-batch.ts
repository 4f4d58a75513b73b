/**
 * The ledger statements of a batch (`withIdempotencyBatch`): the claim of every key of the batch in
 * one statement, and the record of every response in one statement. Like ledger.ts, parameterised,
 * schema-qualified, and run without the caller's plugins.
 */
import { sql } from 'kysely';
import { IdempotencyConflictError } from './errors.ts';
import {
  IN_FAILED_SQL_TRANSACTION,
  LOCK_NOT_AVAILABLE,
  sqlState,
} from './internal/postgres-errors.ts';
import {
  type Executor,
  IN_FLIGHT_SETTING,
  type LedgerEntry,
  run,
  transactionAborted,
  transactionEnded,
} from './ledger.ts';

/** One key of a batch to claim. Keys are distinct, and sorted (see {@link claimKeys}). */
export interface BatchClaim {
  key: string;
  fingerprint: Buffer | null;
  /** From `inFlightToken()`. */
  inFlightToken: string;
}

/** What {@link claimKeys} found for each key, in the order the keys were given. */
export interface BatchClaimResult {
  /** Per key: `claimed`, or the committed entry that already holds it. */
  entries: ({ claimed: true } | { claimed: false; entry: LedgerEntry })[];
  /** The transaction that holds the claims; undefined when none was claimed. */
  xid: string | undefined;
}

/**
 * Claims every key of a batch inside `trx`, in ONE statement, by calling `claim_key()` (migration
 * 00001) for each key in turn: the same semantics as a single claim (insert, or read the live
 * entry, or take an expired one over; wait for a transaction in flight), because it is the same
 * function. A plpgsql function's statements each take a fresh snapshot at READ COMMITTED, so a
 * key committed by a transaction this one waited for is seen and replayed, which a single
 * INSERT ... ON CONFLICT over all the keys could not do in the same statement.
 *
 * Why sorted: the keys are claimed one after another in the order given (a nested loop over
 * `unnest ... with ordinality`). Every batch claims in the same (ascending) order, so a batch
 * waits only for a key greater than every key it holds: two overlapping batches cannot wait for
 * each other in a cycle. `waitMs` bounds the waits of the whole statement, not of each key.
 *
 * The keys claimed join the transaction's in-flight list in the same statement, as a single
 * claim's do: a nested call for one of them inside `fn` is refused (same_transaction) instead of
 * replaying a response that does not exist yet.
 *
 * @throws {IdempotencyConflictError} `wait_timeout` when the waits outlast `waitMs`; the
 *   transaction is then aborted.
 */
export async function claimKeys(
  trx: Executor,
  schema: string,
  batch: { scope: string; ttlMs: number; waitMs: number; claims: readonly BatchClaim[] },
): Promise<BatchClaimResult> {
  const { scope, ttlMs, waitMs, claims } = batch;
  const keys = claims.map((claim) => claim.key);
  const fingerprints = claims.map((claim) => claim.fingerprint);
  const tokens = claims.map((claim) => claim.inFlightToken);
  let rows: ClaimRow[];
  try {
    ({ rows } = await run(
      schema,
      sql<ClaimRow>`
        with claims as materialized (
          select k.ord, c.claimed, c.fingerprint, c.response,
                 pg_current_xact_id_if_assigned()::text as xid
            from unnest(${keys}::text[], ${fingerprints}::bytea[]) with ordinality as k(key, fingerprint, ord)
           cross join lateral ${sql.id(schema, 'claim_key')}(${scope}, k.key, k.fingerprint, ${ttlMs},
                 greatest(1, ${waitMs} - (extract(epoch from clock_timestamp() - statement_timestamp()) * 1000)::integer)) as c
        ),
        marked as (
          select set_config(${IN_FLIGHT_SETTING}::text,
                   concat(current_setting(${IN_FLIGHT_SETTING}::text, true), string_agg(' ' || t.token, '')),
                   true) as setting
            from claims
            join unnest(${tokens}::text[]) with ordinality as t(token, ord) using (ord)
           where claims.claimed
        )
        select claimed, fingerprint, response, xid, (select setting from marked) is not null as marked
          from claims
         order by ord`,
      trx,
    ));
  } catch (error) {
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      throw new IdempotencyConflictError({ scope, reason: 'wait_timeout', cause: error });
    }
    throw error;
  }
  if (rows.length !== claims.length) throw new Error('claim_key returned no row for a key');
  let xid: string | undefined;
  const entries = rows.map((row): BatchClaimResult['entries'][number] => {
    // The transaction gets its id with its first write: the rows before the first claim have none.
    if (row.xid !== null) xid = row.xid;
    return row.claimed
      ? { claimed: true }
      : { claimed: false, entry: { fingerprint: row.fingerprint, response: row.response } };
  });
  return { entries, xid };
}

interface ClaimRow extends LedgerEntry {
  claimed: boolean;
  xid: string | null;
}

/** One response of a batch to store on the entry its claim inserted. */
export interface BatchRecord {
  key: string;
  inFlightToken: string;
  /** The JSON text to store (sealed with `encryption`), or null for `undefined`. */
  responseJson: string | null;
}

/**
 * Stores every response of a batch in ONE statement (`UPDATE ... FROM unnest`), starting each
 * entry's time to live now, and takes the keys off the transaction's in-flight list.
 *
 * @param claimXid - The transaction that claimed the entries ({@link BatchClaimResult}).
 * @throws {UnstorableResponseError} when the transaction is aborted, or `fn` ended it (then no
 *   row, or fewer rows than claimed, are updated by the claiming transaction).
 */
export async function recordResponses(
  trx: Executor,
  schema: string,
  batch: { scope: string; ttlMs: number; records: readonly BatchRecord[] },
  claimXid: string,
): Promise<void> {
  const { scope, ttlMs, records } = batch;
  const keys = records.map((record) => record.key);
  const responses = records.map((record) => record.responseJson);
  const tokens = records.map((record) => record.inFlightToken);
  let rows: { updated: number; xids: string[] | null; setting: string | null }[];
  try {
    ({ rows } = await run(
      schema,
      sql<{ updated: number; xids: string[] | null; setting: string | null }>`
        with updated as (
          update ${sql.id(schema, 'ledger')} l
             set response = u.response::json,
                 expires_at = clock_timestamp() + ${ttlMs} * interval '1 millisecond'
            from unnest(${keys}::text[], ${responses}::text[]) as u(key, response)
           where l.scope = ${scope} and l.key = u.key
          returning pg_current_xact_id_if_assigned()::text as xid
        )
        select (select count(*)::integer from updated) as updated,
               (select array_agg(distinct xid) from updated) as xids,
               set_config(${IN_FLIGHT_SETTING}::text,
                 coalesce((select string_agg(' ' || token, '')
                             from unnest(string_to_array(current_setting(${IN_FLIGHT_SETTING}::text, true), ' ')) as token
                            where token <> '' and token <> all(${tokens}::text[])), ''),
                 true) as setting`,
      trx,
    ));
  } catch (error) {
    if (sqlState(error) !== IN_FAILED_SQL_TRANSACTION) throw error;
    throw transactionAborted({ scope }, error);
  }
  // A COMMIT or ROLLBACK sent by fn ended the claiming transaction: the UPDATE then ran on its own
  // and found no row (rolled back), or ran in a transaction of its own (committed).
  const row = rows[0];
  if (row?.updated !== records.length || row.xids?.length !== 1 || row.xids[0] !== claimXid) {
    throw transactionEnded({ scope });
  }
}
