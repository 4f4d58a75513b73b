/**
 * The only module that runs SQL against the ledger. Every statement is parameterised; the schema
 * name is quoted as an identifier. Every statement runs without the caller's Kysely plugins: a
 * plugin that rewrites identifiers (CamelCasePlugin) or results (ParseJSONResultsPlugin) is for the
 * caller's tables, and would break the ledger's names or turn a stored response into another value.
 */
import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { IdempotencyConflictError, LedgerSchemaError, UnstorableResponseError } from './errors.ts';
import {
  IN_FAILED_SQL_TRANSACTION,
  isMissingLedgerError,
  isUnsupportedEncodingError,
  LOCK_NOT_AVAILABLE,
  NO_ACTIVE_SQL_TRANSACTION,
  sqlState,
} from './internal/postgres-errors.ts';

/** A committed, unexpired ledger entry as a replay needs it. */
export interface LedgerEntry {
  /** SHA-256 of the request's canonical JSON, or null when no request was given. */
  fingerprint: Buffer | null;
  /**
   * The stored response as JSON text, or null when `fn` returned undefined; with encryption, the
   * sealed form (JSON text after one leading space, see internal/sealed-envelope.ts).
   */
  response: string | null;
}

/** An entry read by {@link lookupEntry}, with the time it has left by the database clock. */
export interface LiveEntry extends LedgerEntry {
  remainingMs: number;
}

/**
 * What {@link claimKey} found: the key is now ours (`xid`: the transaction that holds the claim),
 * or a committed entry already holds it.
 */
export type ClaimResult = { claimed: true; xid: string } | { claimed: false; entry: LedgerEntry };

/**
 * The entry's place in the ledger, for the statements that follow a claim in its transaction.
 * `inFlightToken` names it in the transaction's list of keys claimed but not yet recorded.
 */
export interface ClaimedEntry {
  scope: string;
  key: string;
  ttlMs: number;
  inFlightToken: string;
}

/**
 * A transaction-local setting listing the keys this transaction has claimed and not recorded yet.
 * `set_config(..., true)` is undone when the transaction (or the savepoint it was set in) ends, so
 * the list never outlives the claims it describes, and leaves nothing on a pooled connection.
 */
export const IN_FLIGHT_SETTING = 'idempotency_ledger.in_flight';

export interface ClaimRequest {
  scope: string;
  key: string;
  /** From {@link inFlightToken}. */
  inFlightToken: string;
  fingerprint: Buffer | null;
  ttlMs: number;
  /** How long to wait for an in-flight transaction holding the same key. */
  waitMs: number;
  /** Reported in the conflict error when the wait times out (`'reject'`: in flight). */
  onConcurrent: 'wait' | 'reject' | 'optimistic';
}

// Kysely is typed by the caller's database; the ledger's statements are raw SQL, so any will do.
// biome-ignore lint/suspicious/noExplicitAny: the executor's table types are irrelevant here.
export type Executor = Kysely<any>;

/**
 * Reads the live entry for (scope, key), outside any transaction: a replay costs this one
 * statement. Returns undefined when there is none, and `'expired'` when the entry there has
 * expired (the key is new again: a claim will take the row over).
 */
export async function lookupEntry(
  db: Executor,
  schema: string,
  scope: string,
  key: string,
): Promise<LiveEntry | 'expired' | undefined> {
  // response::text: the stored JSON text as it is, independent of any json type parser the
  // application installed on pg, and SQL NULL stays distinguishable from a JSON null. The json
  // type keeps its input verbatim, leading whitespace included, which is how a sealed response is
  // told from one in clear (internal/sealed-envelope.ts). An expired row is reported, not filtered
  // out, for the call's events (a key new again only because its entry expired); its response is
  // left on the server.
  const { rows } = await run(
    schema,
    sql<LiveEntry & { live: boolean }>`
      select fingerprint, expires_at > statement_timestamp() as live,
             case when expires_at > statement_timestamp() then response::text end as response,
             (extract(epoch from expires_at - statement_timestamp()) * 1000)::float8 as "remainingMs"
        from ${sql.id(schema, 'ledger')}
       where scope = ${scope} and key = ${key}`,
    db,
  );
  const row = rows[0];
  if (!row) return undefined;
  if (!row.live) return 'expired';
  const { live: _live, ...entry } = row;
  return entry;
}

/**
 * Claims (scope, key) inside the transaction `trx`, waiting for an in-flight transaction that
 * holds it; see `claim_key` in migrations/ for why this admits one execution only.
 *
 * @throws {IdempotencyConflictError} when the wait times out; the transaction is then aborted.
 */
export async function claimKey(
  trx: Executor,
  schema: string,
  request: ClaimRequest,
): Promise<ClaimResult> {
  const { scope, key, fingerprint, ttlMs, waitMs, inFlightToken } = request;
  let row: ClaimRow | undefined;
  try {
    // claim_key cannot tell this transaction's own unrecorded claim from a committed entry: both
    // are visible to it. The in-flight list can, and is kept in the same statement (no round trip).
    const { rows } = await run(
      schema,
      sql<ClaimRow>`
        select claimed, fingerprint, response,
               case when claimed
                 then set_config(${IN_FLIGHT_SETTING}::text,
                        concat(current_setting(${IN_FLIGHT_SETTING}::text, true), ' ', ${inFlightToken}::text), true)
                      is not null
                 else position(${inFlightToken}::text in
                        coalesce(current_setting(${IN_FLIGHT_SETTING}::text, true), '')) > 0
               end as "inFlightHere",
               pg_current_xact_id_if_assigned()::text as xid
          from ${sql.id(schema, 'claim_key')}(${scope}, ${key}, ${fingerprint}, ${ttlMs}, ${waitMs})`,
      trx,
    );
    row = rows[0];
  } catch (error) {
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      const reason = request.onConcurrent === 'reject' ? 'in_flight' : 'wait_timeout';
      throw new IdempotencyConflictError({ scope, key, reason, cause: error });
    }
    throw error;
  }
  if (!row) throw new Error('claim_key returned no row');
  if (row.claimed) return { claimed: true, xid: row.xid ?? '' };
  if (row.inFlightHere) {
    // An earlier call in this very transaction claimed the key and has not recorded its response:
    // a nested or concurrent call on the same transaction. Waiting for it is impossible (it is
    // us), and its entry has no response yet to replay.
    throw new IdempotencyConflictError({ scope, key, reason: 'same_transaction' });
  }
  return { claimed: false, entry: { fingerprint: row.fingerprint, response: row.response } };
}

interface ClaimRow extends LedgerEntry {
  claimed: boolean;
  inFlightHere: boolean;
  xid: string | null;
}

/**
 * The name of (schema, scope, key) in the transaction's in-flight list: a hex digest, so it has a
 * fixed length and no separator, and one token can never be found inside a list of others.
 */
export function inFlightToken(schema: string, scope: string, key: string): string {
  return createHash('sha256')
    .update(JSON.stringify([schema, scope, key]))
    .digest('hex')
    .slice(0, 32);
}

/**
 * Stores the response on the entry this transaction claimed, and starts its time to live now: a
 * slow `fn` must not use up the window in which its own response replays.
 *
 * @param claimXid - The transaction that claimed the entry ({@link ClaimResult}).
 * @throws {UnstorableResponseError} when the transaction is aborted, or `fn` ended it.
 */
export async function recordResponse(
  trx: Executor,
  schema: string,
  entry: ClaimedEntry,
  claimXid: string,
  responseJson: string | null,
): Promise<void> {
  let rows: { xid: string | null }[];
  try {
    ({ rows } = await run(
      schema,
      sql<{ xid: string | null }>`
        update ${sql.id(schema, 'ledger')}
           set response = ${responseJson}::json,
               expires_at = clock_timestamp() + ${entry.ttlMs} * interval '1 millisecond'
         where scope = ${entry.scope} and key = ${entry.key}
        returning pg_current_xact_id_if_assigned()::text as xid,
                  set_config(${IN_FLIGHT_SETTING}::text,
                    replace(current_setting(${IN_FLIGHT_SETTING}::text, true), ${` ${entry.inFlightToken}`}::text, ''),
                    true)`,
      trx,
    ));
  } catch (error) {
    if (sqlState(error) !== IN_FAILED_SQL_TRANSACTION) throw error;
    throw transactionAborted(entry, error);
  }
  // A COMMIT or ROLLBACK sent by fn ends the claiming transaction: the UPDATE then runs on its
  // own, and finds no row (rolled back) or records into a transaction of its own (committed).
  // Either way fn's writes and the entry no longer commit together.
  if (rows.length !== 1 || rows[0]?.xid !== claimXid) {
    throw transactionEnded(entry);
  }
}

/** fn sent COMMIT or ROLLBACK: its writes and the response can no longer commit together. */
export function transactionEnded(
  entry: { scope: string; key?: string | undefined },
  cause?: unknown,
) {
  return new UnstorableResponseError({
    scope: entry.scope,
    key: entry.key,
    reason: 'transaction_ended',
    message:
      "The key's transaction ended inside fn (a COMMIT or ROLLBACK sent by fn?): fn's writes " +
      'and the response could not be committed together; fn must leave the transaction to ' +
      'withIdempotency',
    cause,
  });
}

/**
 * fn returned normally, but one of its statements failed and the error was caught inside fn:
 * Postgres has aborted the transaction, so neither fn's writes nor the response can commit.
 */
export function transactionAborted(
  entry: { scope: string; key?: string | undefined },
  cause: unknown,
) {
  return new UnstorableResponseError({
    scope: entry.scope,
    key: entry.key,
    reason: 'transaction_aborted',
    message:
      'fn returned, but a statement inside it had failed and aborted the transaction ' +
      '(was an SQL error caught and ignored in fn?); nothing was committed',
    cause,
  });
}

/** The entry {@link recordOnce} writes: the finished call, response included. */
export interface FinishedEntry {
  scope: string;
  key: string;
  fingerprint: Buffer | null;
  ttlMs: number;
  responseJson: string | null;
  /** How long to wait for another transaction that holds the same key uncommitted. */
  waitMs: number;
}

/**
 * Writes the finished entry in one INSERT, last in the transaction that ran `fn`
 * (`onConcurrent: 'optimistic'`), with `record_entry()` (migration 00003): there is no claim
 * before `fn`, so the row is written once and never updated. An expired entry for the key is taken
 * over. Returns `'taken'` when a live entry already holds the key: another call committed it
 * first, and this transaction must roll back.
 *
 * A transaction that holds the key uncommitted (a claim, or another optimistic call between its
 * record and its COMMIT) makes the INSERT wait for its outcome, at most `waitMs`.
 *
 * @throws {IdempotencyConflictError} `wait_timeout` when that wait outlasts `waitMs`, and
 *   `same_transaction` when this transaction recorded the key itself (a nested call inside `fn`,
 *   through another Kysely object than the one `fn` was given, which refuses it at once).
 * @throws {UnstorableResponseError} `transaction_aborted` when a statement in `fn` failed, and
 *   `transaction_ended` when `fn` sent COMMIT or ROLLBACK.
 */
export async function recordOnce(
  trx: Executor,
  schema: string,
  entry: FinishedEntry,
): Promise<'recorded' | 'taken'> {
  // A COMMIT or ROLLBACK sent by fn would leave the INSERT to run in a transaction of its own,
  // committing an entry for writes that were rolled back. Such a transaction has written nothing
  // before the INSERT, so the common path inserts only into a transaction that already has (fn
  // wrote); for a fn that wrote nothing, a savepoint first proves that the transaction is open.
  // Only a plain COMMIT or ROLLBACK: one that chains a new transaction (AND CHAIN, or a BEGIN sent
  // after it) leaves an open transaction that cannot be told from the one fn was given.
  let outcome = await recordEntry(trx, schema, entry, true);
  if (outcome === 'no_writes') {
    await sql`savepoint idempotency_ledger_open`
      .execute(trx.withoutPlugins())
      .catch((error: unknown) => {
        const state = sqlState(error);
        if (state === IN_FAILED_SQL_TRANSACTION) throw transactionAborted(entry, error);
        // Anything else (a terminated backend, a lost connection) is not fn's doing.
        if (state !== NO_ACTIVE_SQL_TRANSACTION) throw error;
        throw transactionEnded(entry, error);
      });
    await sql`release savepoint idempotency_ledger_open`.execute(trx.withoutPlugins());
    outcome = await recordEntry(trx, schema, entry, false);
  }
  if (outcome === 'own') {
    throw new IdempotencyConflictError({
      scope: entry.scope,
      key: entry.key,
      reason: 'same_transaction',
    });
  }
  return outcome === 'recorded' ? 'recorded' : 'taken';
}

type RecordOutcome = 'recorded' | 'taken' | 'own' | 'no_writes';

async function recordEntry(
  trx: Executor,
  schema: string,
  entry: FinishedEntry,
  onlyAfterWrites: boolean,
): Promise<RecordOutcome> {
  try {
    const { rows } = await run(
      schema,
      sql<{ outcome: RecordOutcome }>`
        select ${sql.id(schema, 'record_entry')}(${entry.scope}, ${entry.key}, ${entry.fingerprint},
                 ${entry.responseJson}::json, ${entry.ttlMs}, ${entry.waitMs}, ${onlyAfterWrites})
               as outcome`,
      trx,
    );
    const outcome = rows[0]?.outcome;
    if (!outcome) throw new Error('record_entry returned no row');
    return outcome;
  } catch (error) {
    const state = sqlState(error);
    if (state === LOCK_NOT_AVAILABLE) {
      const { scope, key } = entry;
      throw new IdempotencyConflictError({ scope, key, reason: 'wait_timeout', cause: error });
    }
    if (state === IN_FAILED_SQL_TRANSACTION) throw transactionAborted(entry, error);
    throw error;
  }
}

/**
 * Aborts the caller's transaction after a failure between the claim and the record. Deleting the
 * claim would not be enough: `fn`'s own writes would stay, and a caller who caught the error and
 * committed would keep a business write with no ledger entry, which a retry executes again. An
 * aborted transaction can only roll back (Postgres turns COMMIT into ROLLBACK), so both go.
 */
export async function abortTransaction(trx: Executor): Promise<void> {
  await sql`
    do $$ begin
      raise exception 'idempotency-ledger: withIdempotency failed in this transaction; roll it back';
    end $$`
    .execute(trx.withoutPlugins())
    // The exception is the point; an already aborted transaction refuses the statement instead.
    .catch(() => undefined);
}

/** Deletes up to `batchSize` expired entries, skipping locked ones; returns how many it deleted. */
export async function deleteExpiredBatch(
  db: Executor,
  schema: string,
  batchSize: number,
): Promise<number> {
  // Expired ledger entries and expired finished operations (migration 00002), a batch of each,
  // in one statement.
  const { rows } = await run(
    schema,
    sql<{ deleted: number }>`
      select ${sql.id(schema, 'delete_expired')}(${batchSize})
           + ${sql.id(schema, 'delete_expired_operations')}(${batchSize}) as deleted`,
    db,
  );
  return rows[0]?.deleted ?? 0;
}

/**
 * Runs a ledger statement without the executor's plugins, and turns "relation/function does not
 * exist" into a LedgerSchemaError that says what to do. Shared with ledger-batch.ts, the batch
 * statements on the same table.
 */
export async function run<R>(
  schema: string,
  query: { execute(executor: Executor): Promise<R> },
  executor: Executor,
): Promise<R> {
  try {
    return await query.execute(executor.withoutPlugins());
  } catch (error) {
    if (isUnsupportedEncodingError(error)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'unsupported',
        message:
          "The database's encoding cannot hold this scope or key: the ledger needs a UTF-8 database",
        cause: error,
      });
    }
    if (isMissingLedgerError(error)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'missing',
        message: `The idempotency ledger is missing from schema "${schema}", or not migrated to this version: run migrate() (or \`idempotency-ledger migrate\`) first`,
        cause: error,
      });
    }
    throw error;
  }
}
