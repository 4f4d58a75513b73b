/**
 * The only module that runs SQL against the operation tables (migration 00002). Every statement
 * is parameterised and runs without the caller's Kysely plugins, as the ledger's do. Fencing
 * tokens are bigints: they travel as decimal strings.
 */
import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: the statements are raw SQL; table types do not apply.
type Executor = Kysely<any>;

/** Where an operation lives: its schema and its (scope, key). */
export interface OperationRef {
  schema: string;
  scope: string;
  key: string;
}

/** What {@link acquireOperation} found. */
export type Acquired =
  | { outcome: 'acquired'; fencingToken: string; resumed: boolean }
  | { outcome: 'finished'; response: string | null }
  | { outcome: 'held'; leaseRemainingMs: number }
  | { outcome: 'mismatch' };

interface AcquireRow {
  outcome: Acquired['outcome'];
  fencing_token: string | null;
  resumed: boolean;
  response: string | null;
  lease_remaining_ms: number | null;
}

/** One statement: take the operation, or report who has it (see acquire_operation in SQL). */
export async function acquireOperation(
  db: Executor,
  ref: OperationRef,
  attempt: {
    name: string;
    fingerprint: Buffer | null;
    requestJson: string | null;
    leaseMs: number;
  },
): Promise<Acquired> {
  const { rows } = await sql<AcquireRow>`
    select * from ${sql.id(ref.schema, 'acquire_operation')}(
      ${ref.scope}, ${ref.key}, ${attempt.name}, ${attempt.fingerprint},
      ${attempt.requestJson}::json, ${attempt.leaseMs})`.execute(db.withoutPlugins());
  const row = rows[0] as AcquireRow;
  switch (row.outcome) {
    case 'acquired':
      return { outcome: 'acquired', fencingToken: String(row.fencing_token), resumed: row.resumed };
    case 'finished':
      return { outcome: 'finished', response: row.response };
    case 'held':
      return { outcome: 'held', leaseRemainingMs: Math.max(0, row.lease_remaining_ms ?? 0) };
    default:
      return { outcome: 'mismatch' };
  }
}

/** The steps earlier attempts recorded: name -> result JSON text (null for none). */
export async function recordedSteps(
  db: Executor,
  ref: OperationRef,
): Promise<Map<string, string | null>> {
  const { rows } = await sql<{ step: string; result: string | null }>`
    select step, result::text as result from ${sql.id(ref.schema, 'operation_steps')}
     where scope = ${ref.scope} and key = ${ref.key}`.execute(db.withoutPlugins());
  return new Map(rows.map((row) => [row.step, row.result]));
}

/**
 * Records a step's result, fenced: in one statement, it touches the operation row where the
 * fencing token is still `fencingToken` (a row lock held to the end of the transaction, so a
 * takeover waits for it) and inserts the step only then. Run on the step's own transaction, its
 * business writes commit with it or not at all. Returns false when the token is no longer the
 * holder's: the caller must roll back.
 */
export async function recordStep(
  executor: Executor,
  ref: OperationRef,
  fencingToken: string,
  step: string,
  resultJson: string | null,
): Promise<boolean> {
  const { rows } = await sql<{ recorded: number }>`
    with fence as (
      update ${sql.id(ref.schema, 'operations')}
         set updated_at = clock_timestamp()
       where scope = ${ref.scope} and key = ${ref.key}
         and fencing_token = ${fencingToken}::bigint and state = 'in_progress'
      returning 1
    ), recorded as (
      insert into ${sql.id(ref.schema, 'operation_steps')} (scope, key, step, result, fencing_token)
      select ${ref.scope}, ${ref.key}, ${step}, ${resultJson}::json, ${fencingToken}::bigint
        from fence
      returning 1
    )
    select count(*)::int as recorded from recorded`.execute(executor.withoutPlugins());
  return rows[0]?.recorded === 1;
}

/**
 * Finishes the operation with its final response, fenced like {@link recordStep}, in the
 * caller's transaction (the one with the final business writes). Returns false when the token is
 * no longer the holder's.
 */
export async function finishOperation(
  executor: Executor,
  ref: OperationRef,
  fencingToken: string,
  responseJson: string | null,
  ttlMs: number,
): Promise<boolean> {
  const result = await sql`
    update ${sql.id(ref.schema, 'operations')}
       set state = 'finished', response = ${responseJson}::json, lease_expires_at = null,
           updated_at = clock_timestamp(),
           expires_at = clock_timestamp() + ${ttlMs} * interval '1 millisecond'
     where scope = ${ref.scope} and key = ${ref.key}
       and fencing_token = ${fencingToken}::bigint and state = 'in_progress'`.execute(
    executor.withoutPlugins(),
  );
  return result.numAffectedRows === 1n;
}

/** Extends the holder's lease; false when it is no longer the holder. */
export async function renewLease(
  db: Executor,
  ref: OperationRef,
  fencingToken: string,
  leaseMs: number,
): Promise<boolean> {
  const result = await sql`
    update ${sql.id(ref.schema, 'operations')}
       set lease_expires_at = clock_timestamp() + ${leaseMs} * interval '1 millisecond'
     where scope = ${ref.scope} and key = ${ref.key}
       and fencing_token = ${fencingToken}::bigint and state = 'in_progress'`.execute(
    db.withoutPlugins(),
  );
  return result.numAffectedRows === 1n;
}

/**
 * Gives the lease up at once (the operation stays in progress), so that the client's retry, or
 * the completer, resumes it without waiting for the lease to run out.
 */
export async function releaseLease(
  db: Executor,
  ref: OperationRef,
  fencingToken: string,
): Promise<void> {
  await sql`
    update ${sql.id(ref.schema, 'operations')}
       set lease_expires_at = null, updated_at = clock_timestamp()
     where scope = ${ref.scope} and key = ${ref.key}
       and fencing_token = ${fencingToken}::bigint and state = 'in_progress'`.execute(
    db.withoutPlugins(),
  );
}
