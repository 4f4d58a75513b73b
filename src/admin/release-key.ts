import { type Kysely, sql } from 'kysely';
import { parseAdminOptions, releaseOptionsSchema } from './admin-options.ts';
import { type Executor, runAdmin } from './admin-sql.ts';

/** Options of {@link releaseKey}. */
export interface ReleaseKeyOptions {
  scope: string;
  /** The idempotency key, as the caller sent it. */
  key: string;
  /** Release an operation even while an attempt holds its lease. Default false. */
  force?: boolean;
  /** Postgres schema that holds the ledger (the one you migrated). Default `idempotency`. */
  schema?: string;
}

/** What {@link releaseKey} did. */
export type ReleaseResult =
  | {
      outcome: 'released';
      /** Whether a ledger entry (live or expired) was deleted. */
      entryDeleted: boolean;
      /**
       * The state the key's operation was in before it was retired (`in_progress` only with
       * `force` when its lease was live); null when no operation was released.
       */
      operationReleased: null | {
        previousState: 'in_progress' | 'finished';
        /** Whether an attempt held a live lease on it (released with `force`). */
        leaseWasLive: boolean;
      };
    }
  /** Nothing for this (scope, key): no entry, and no operation that is not already expired. */
  | { outcome: 'nothing_to_release' }
  /**
   * Nothing was changed. `live_lease`: an attempt holds the operation's lease (pass `force`);
   * `locked`: a call in flight holds the entry's or operation's row for longer than the wait.
   */
  | { outcome: 'refused'; reason: 'live_lease'; leaseRemainingMs: number }
  | { outcome: 'refused'; reason: 'locked' };

/** How long {@link releaseKey} waits for a row a call in flight has locked. */
const LOCK_TIMEOUT = '5s';
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Releases one (scope, key), so that the next request with that key executes again, in one
 * transaction that changes nothing else:
 *
 * - its ledger entry is deleted (live or expired): a retry of the original request now runs its
 *   business write again; only release a key whose first execution you know must be repeated;
 * - its operation (`idempotency-ledger/operations`), finished or in progress without a live lease,
 *   is retired: marked expired with its lease cleared, its fencing token raised and its steps
 *   deleted. The next request with the key starts it afresh, and cleanup deletes the row.
 *
 * An operation whose lease is live is refused (`{ outcome: 'refused', reason: 'live_lease' }`)
 * unless `force` is set; then it is retired all the same. That is safe for the ledger: the
 * running attempt's fenced writes (a step, the final response, a lease renewal) find its token
 * gone and commit nothing, and it stops with `OperationLeaseLostError`. What it already did
 * outside the database since its last recorded step (a charge) is unknown to the ledger; the
 * next run sends the same downstream keys, so a provider that honours them deduplicates it.
 *
 * Why retire rather than delete an operation: a new row would start again at fencing token 1,
 * which an attempt still running past its lease may hold, and that attempt's writes would then
 * land in the new run. A retired row keeps its token growing, as an expired one does.
 *
 * Rows a call in flight holds are waited for at most 5 s, then `{ reason: 'locked' }`.
 *
 * @throws {InvalidIdempotencyOptionsError} for an empty scope or key, or an unknown option.
 * @throws {LedgerSchemaError} when the ledger is not migrated into `schema`.
 *
 * @example
 * ```ts
 * const result = await releaseKey(db, { scope: 'merchant:42', key: 'order-7' });
 * if (result.outcome === 'refused' && result.reason === 'live_lease') {
 *   // an attempt is running it right now; releaseKey(db, { ..., force: true }) stops it
 * }
 * ```
 */
export async function releaseKey<DB>(
  db: Kysely<DB>,
  options: ReleaseKeyOptions,
): Promise<ReleaseResult> {
  const { scope, key, force, schema } = parseAdminOptions(
    releaseOptionsSchema,
    options,
    'releaseKey',
  );
  try {
    return await runAdmin(db as Kysely<unknown>, schema, (executor) =>
      executor.transaction().execute((trx) => releaseIn(trx, { schema, scope, key, force })),
    );
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === LOCK_NOT_AVAILABLE) {
      return { outcome: 'refused', reason: 'locked' };
    }
    throw error;
  }
}

async function releaseIn(
  trx: Executor,
  ref: { schema: string; scope: string; key: string; force: boolean },
): Promise<ReleaseResult> {
  const { schema, scope, key } = ref;
  await sql`select set_config('lock_timeout', ${LOCK_TIMEOUT}, true)`.execute(trx);
  // The operation first, locked: its lease is judged on the row no attempt can change until
  // this transaction ends, and a refusal leaves the entry alone too.
  const { rows } = await sql<{
    state: 'in_progress' | 'finished';
    expired: boolean;
    lease_remaining_ms: number | null;
  }>`
    select o.state, coalesce(o.expires_at <= clock_timestamp(), false) as expired,
           case when o.lease_expires_at > clock_timestamp() then
             (extract(epoch from o.lease_expires_at - clock_timestamp()) * 1000)::float8
           end as lease_remaining_ms
      from ${sql.id(schema, 'operations')} o
     where o.scope = ${scope} and o.key = ${key}
       for update`.execute(trx);
  const operation = rows[0];
  const leaseLive = operation?.state === 'in_progress' && operation.lease_remaining_ms !== null;
  if (leaseLive && !ref.force) {
    return {
      outcome: 'refused',
      reason: 'live_lease',
      leaseRemainingMs: operation.lease_remaining_ms ?? 0,
    };
  }
  let operationReleased: Extract<ReleaseResult, { outcome: 'released' }>['operationReleased'] =
    null;
  if (operation && !operation.expired) {
    await sql`
      update ${sql.id(schema, 'operations')}
         set state = 'finished', response = null, lease_expires_at = null,
             fencing_token = fencing_token + 1, expires_at = clock_timestamp(),
             updated_at = clock_timestamp()
       where scope = ${scope} and key = ${key}`.execute(trx);
    await sql`
      delete from ${sql.id(schema, 'operation_steps')}
       where scope = ${scope} and key = ${key}`.execute(trx);
    operationReleased = { previousState: operation.state, leaseWasLive: leaseLive };
  }
  const deleted = await sql`
    delete from ${sql.id(schema, 'ledger')} where scope = ${scope} and key = ${key}`.execute(trx);
  const entryDeleted = deleted.numAffectedRows === 1n;
  if (!entryDeleted && operationReleased === null) return { outcome: 'nothing_to_release' };
  return { outcome: 'released', entryDeleted, operationReleased };
}
