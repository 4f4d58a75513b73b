/**
 * The only module of idempotency-ledger/operations that runs SQL against the operation tables
 * (migration 00002); idempotency-ledger/admin reads them for operators, and releases an operation
 * through releaseOperation, so the fencing rules stay here. Every statement is parameterised and
 * runs without the caller's Kysely plugins, as the ledger's do. Fencing tokens are bigints: they
 * travel as decimal strings.
 */
import { type Kysely, sql } from 'kysely';
import { LedgerSchemaError } from '../index.ts';

// biome-ignore lint/suspicious/noExplicitAny: the statements are raw SQL; table types do not apply.
type Executor = Kysely<any>;

// "Relation, function or schema does not exist": the schema was not migrated (to 00002).
const MISSING = new Set(['42P01', '42883', '3F000']);
// lock_not_available: a lock wait outlasted lock_timeout.
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Runs a statement that is the first an entry point sends, turning a schema without the operation
 * tables into a LedgerSchemaError that says what to do.
 */
async function inSchema<R>(schema: string, statement: () => Promise<R>): Promise<R> {
  try {
    return await statement();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && MISSING.has(code)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'missing',
        message: `The operation tables are missing from schema "${schema}": run migrate() (or \`idempotency-ledger migrate\`) first`,
        cause: error,
      });
    }
    throw error;
  }
}

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

/**
 * One statement: take the operation, or report who has it (see acquire_operation in SQL). Waits
 * for the operation row's lock at most `waitMs`, then reports it held.
 */
export async function acquireOperation(
  db: Executor,
  ref: OperationRef,
  attempt: {
    name: string;
    fingerprint: Buffer | null;
    requestJson: string | null;
    leaseMs: number;
    ttlMs: number;
  },
  waitMs: number,
): Promise<Acquired> {
  let row: AcquireRow;
  try {
    const { rows } = await inSchema(ref.schema, () =>
      sql<AcquireRow>`
        select * from ${sql.id(ref.schema, 'acquire_operation')}(
          ${ref.scope}, ${ref.key}, ${attempt.name}, ${attempt.fingerprint},
          ${attempt.requestJson}::json, ${attempt.leaseMs}, ${Math.ceil(waitMs)}, ${attempt.ttlMs})`.execute(
        db.withoutPlugins(),
      ),
    );
    row = rows[0] as AcquireRow;
  } catch (error) {
    // The row stayed locked the whole wait: an attempt is committing to it at this moment.
    if ((error as { code?: unknown } | null)?.code === LOCK_NOT_AVAILABLE) {
      return { outcome: 'held', leaseRemainingMs: 0 };
    }
    throw error;
  }
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
 * caller's transaction (the one with the final business writes); it replays for the ttl stored at
 * the operation's start. Returns false when the token is no longer the holder's.
 */
export async function finishOperation(
  executor: Executor,
  ref: OperationRef,
  fencingToken: string,
  responseJson: string | null,
): Promise<boolean> {
  const result = await sql`
    update ${sql.id(ref.schema, 'operations')}
       set state = 'finished', response = ${responseJson}::json, lease_expires_at = null,
           updated_at = clock_timestamp(),
           expires_at = clock_timestamp() + ttl_ms * interval '1 millisecond'
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

/** An operation in progress that no attempt holds, as the completer finds it. */
export interface AbandonedOperation {
  scope: string;
  key: string;
  name: string;
  requestJson: string | null;
}

/**
 * Up to `limit` operations in progress whose lease ran out or was released, of the given names,
 * least recently touched first. Taking one is still `acquire_operation`'s: two completers that
 * find the same operation cannot both run it.
 */
export async function findAbandonedOperations(
  db: Executor,
  schema: string,
  names: readonly string[],
  limit: number,
): Promise<AbandonedOperation[]> {
  const { rows } = await inSchema(schema, () =>
    sql<{ scope: string; key: string; name: string; request: string | null }>`
      select scope, key, name, request::text as request
        from ${sql.id(schema, 'operations')}
       where state = 'in_progress'
         and (lease_expires_at is null or lease_expires_at <= clock_timestamp())
         and name = any(${[...names]}::text[])
       order by updated_at
       limit ${limit}`.execute(db.withoutPlugins()),
  );
  return rows.map((row) => ({ ...row, requestJson: row.request }));
}

/** An operation as operators see it (keys included: operators asked for them). */
export interface OperationSummary {
  scope: string;
  key: string;
  name: string;
  state: 'in_progress' | 'finished';
  fencingToken: string;
  attempts: number;
  /** Milliseconds of lease left (0 once it ran out); null when it was released. */
  leaseRemainingMs: number | null;
  steps: string[];
  createdAt: Date;
  updatedAt: Date;
  /** Milliseconds since it was created, by the database clock. */
  ageMs: number;
}

/** Operations in progress, oldest first (the ones a completer or an operator should look at). */
export async function listInProgress(
  db: Executor,
  schema: string,
  limit: number,
): Promise<OperationSummary[]> {
  const { rows } = await sql<{
    scope: string;
    key: string;
    name: string;
    state: 'in_progress' | 'finished';
    fencing_token: string;
    attempts: number;
    lease_remaining_ms: number | null;
    steps: string[] | null;
    created_at: Date;
    updated_at: Date;
    age_ms: number;
  }>`
    select o.scope, o.key, o.name, o.state, o.fencing_token::text as fencing_token, o.attempts,
           -- greatest() skips nulls: without the case, a released lease would read as 0 left.
           case when o.lease_expires_at is not null then
             greatest(0, extract(epoch from o.lease_expires_at - clock_timestamp()) * 1000)::float8
           end as lease_remaining_ms,
           array(select s.step from ${sql.id(schema, 'operation_steps')} s
                  where s.scope = o.scope and s.key = o.key order by s.recorded_at) as steps,
           o.created_at, o.updated_at,
           (extract(epoch from clock_timestamp() - o.created_at) * 1000)::float8 as age_ms
      from ${sql.id(schema, 'operations')} o
     where o.state = 'in_progress'
     order by o.created_at
     limit ${limit}`.execute(db.withoutPlugins());
  return rows.map((row) => ({
    scope: row.scope,
    key: row.key,
    name: row.name,
    state: row.state,
    fencingToken: row.fencing_token,
    attempts: row.attempts,
    leaseRemainingMs: row.lease_remaining_ms,
    steps: row.steps ?? [],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ageMs: row.age_ms,
  }));
}

/**
 * Takes the lease away from whoever holds an operation in progress, and raises its fencing token
 * so that the holder (if it is still running) can commit nothing more. Returns false when there
 * is no such operation in progress.
 */
export async function revokeLease(db: Executor, ref: OperationRef): Promise<boolean> {
  const result = await sql`
    update ${sql.id(ref.schema, 'operations')}
       set lease_expires_at = null, fencing_token = fencing_token + 1,
           updated_at = clock_timestamp()
     where scope = ${ref.scope} and key = ${ref.key} and state = 'in_progress'`.execute(
    db.withoutPlugins(),
  );
  return result.numAffectedRows === 1n;
}
