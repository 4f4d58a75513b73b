/**
 * The only module that runs SQL against the ledger. Every statement is parameterised; the schema
 * name is quoted as an identifier.
 */
import { type Kysely, sql } from 'kysely';
import { IdempotencyConflictError, LedgerSchemaError, UnstorableResponseError } from './errors.ts';
import {
  IN_FAILED_SQL_TRANSACTION,
  isMissingLedgerError,
  LOCK_NOT_AVAILABLE,
  sqlState,
} from './internal/postgres-errors.ts';

/** A committed, unexpired ledger entry as a replay needs it. */
export interface LedgerEntry {
  /** SHA-256 of the request's canonical JSON, or null when no request was given. */
  fingerprint: Buffer | null;
  /** The stored response as JSON text, or null when `fn` returned undefined. */
  response: string | null;
}

/** An entry read by {@link lookupEntry}, with the time it has left by the database clock. */
export interface LiveEntry extends LedgerEntry {
  remainingMs: number;
}

/** What {@link claimKey} found: the key is now ours, or a committed entry already holds it. */
export type ClaimResult = { claimed: true } | { claimed: false; entry: LedgerEntry };

export interface ClaimRequest {
  scope: string;
  key: string;
  fingerprint: Buffer | null;
  ttlMs: number;
  /** How long to wait for an in-flight transaction holding the same key. */
  waitMs: number;
  /** Reported in the conflict error when the wait times out. */
  onConcurrent: 'wait' | 'reject';
}

// Kysely is typed by the caller's database; the ledger's statements are raw SQL, so any will do.
// biome-ignore lint/suspicious/noExplicitAny: the executor's table types are irrelevant here.
type Executor = Kysely<any>;

/**
 * Reads the live entry for (scope, key), outside any transaction: a replay costs this one
 * statement. Returns undefined when there is none, or it has expired.
 */
export async function lookupEntry(
  db: Executor,
  schema: string,
  scope: string,
  key: string,
): Promise<LiveEntry | undefined> {
  // response::text: the stored JSON text as it is, independent of any json type parser the
  // application installed on pg, and SQL NULL stays distinguishable from a JSON null.
  const { rows } = await run(
    schema,
    sql<LiveEntry>`
      select fingerprint, response::text as response,
             (extract(epoch from expires_at - statement_timestamp()) * 1000)::float8 as "remainingMs"
        from ${sql.id(schema, 'ledger')}
       where scope = ${scope} and key = ${key} and expires_at > statement_timestamp()`.execute(db),
  );
  return rows[0];
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
  const { scope, key, fingerprint, ttlMs, waitMs } = request;
  try {
    const { rows } = await run(
      schema,
      sql<{ claimed: boolean } & LedgerEntry>`
        select claimed, fingerprint, response
          from ${sql.id(schema, 'claim_key')}(${scope}, ${key}, ${fingerprint}, ${ttlMs}, ${waitMs})`.execute(
        trx,
      ),
    );
    const row = rows[0];
    if (!row) throw new Error('claim_key returned no row');
    return row.claimed
      ? { claimed: true }
      : { claimed: false, entry: { fingerprint: row.fingerprint, response: row.response } };
  } catch (error) {
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      const reason = request.onConcurrent === 'reject' ? 'in_flight' : 'wait_timeout';
      throw new IdempotencyConflictError({ scope, key, reason, cause: error });
    }
    throw error;
  }
}

/**
 * Stores the response on the entry this transaction claimed, and starts its time to live now: a
 * slow `fn` must not use up the window in which its own response replays.
 */
export async function recordResponse(
  trx: Executor,
  schema: string,
  entry: { scope: string; key: string; ttlMs: number },
  responseJson: string | null,
): Promise<void> {
  try {
    await run(
      schema,
      sql`
        update ${sql.id(schema, 'ledger')}
           set response = ${responseJson}::json,
               expires_at = clock_timestamp() + ${entry.ttlMs} * interval '1 millisecond'
         where scope = ${entry.scope} and key = ${entry.key}`.execute(trx),
    );
  } catch (error) {
    if (sqlState(error) !== IN_FAILED_SQL_TRANSACTION) throw error;
    // fn returned normally, but one of its statements failed and the error was caught inside fn:
    // Postgres has aborted the transaction, so neither fn's writes nor the response can commit.
    throw new UnstorableResponseError({
      scope: entry.scope,
      key: entry.key,
      reason: 'transaction_aborted',
      message:
        'fn returned, but a statement inside it had failed and aborted the transaction ' +
        '(was an SQL error caught and ignored in fn?); nothing was committed',
      cause: error,
    });
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
    .execute(trx)
    // The exception is the point; an already aborted transaction refuses the statement instead.
    .catch(() => undefined);
}

/** Deletes up to `batchSize` expired entries, skipping locked ones; returns how many it deleted. */
export async function deleteExpiredBatch(
  db: Executor,
  schema: string,
  batchSize: number,
): Promise<number> {
  const { rows } = await run(
    schema,
    sql<{ deleted: number }>`
      select ${sql.id(schema, 'delete_expired')}(${batchSize}) as deleted`.execute(db),
  );
  return rows[0]?.deleted ?? 0;
}

/** Turns "relation/function does not exist" into a LedgerSchemaError that says what to do. */
async function run<R>(schema: string, query: Promise<R>): Promise<R> {
  try {
    return await query;
  } catch (error) {
    if (isMissingLedgerError(error)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'missing',
        message: `The idempotency ledger is missing from schema "${schema}": run migrate() (or \`idempotency-ledger migrate\`) first`,
        cause: error,
      });
    }
    throw error;
  }
}
