import { type Kysely, sql } from 'kysely';
import { releaseOperation } from '../operations/index.ts';
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
       * When the deleted entry was created (null when none was), to compare with what
       * `inspectKey` showed: an entry a call created since then is another one.
       */
      entryCreatedAt: Date | null;
      /**
       * The key's operation, when one in progress was released (its lease taken away, its
       * fencing token raised; it stays in progress with its steps); null otherwise.
       */
      operationReleased: null | {
        /** Whether an attempt held a live lease on it (released with `force`). */
        leaseWasLive: boolean;
      };
    }
  /**
   * Nothing for this (scope, key): no entry, and no operation in progress. A finished operation
   * is not released: it replays its response until it expires.
   */
  | { outcome: 'nothing_to_release' }
  /**
   * Nothing was changed. `live_lease`: an attempt holds the operation's lease (pass `force`);
   * `locked`: a call in flight holds the entry's or operation's row right now (taking an expired
   * entry over, recording a step, or cleanup deleting it): look again, then try again.
   */
  | { outcome: 'refused'; reason: 'live_lease'; leaseRemainingMs: number }
  | { outcome: 'refused'; reason: 'locked' };

// Only a table lock (a migration's DDL) can make it wait now: rows are locked with NOWAIT.
const LOCK_TIMEOUT = '5s';
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Releases one (scope, key), in one transaction that changes nothing else:
 *
 * - its ledger entry is deleted (live or expired): a retry of the original request now runs its
 *   business write again; only release a key whose first execution you know must be repeated;
 * - its operation (`idempotency-ledger/operations`), if in progress, is released as
 *   `releaseOperation` does: its lease is taken away and its fencing token raised, and it stays
 *   in progress with its recorded steps. The next client retry, or the completer's next pass,
 *   resumes it from its last recorded step. A finished operation is left alone: it replays until
 *   it expires.
 *
 * Why resume rather than start afresh: the steps already recorded stand for effects made outside
 * the database (a charge at a payment provider), which must not be made again; a resumed run skips
 * them and gets their recorded results. And the row must live on for fencing: an operation in
 * progress is never deleted by cleanup, so its token only grows. A deleted row would be inserted
 * again at fencing token 1, which an attempt still running (stalled past its lease, or released
 * with `force`) may hold, and that attempt's writes would land in the new run.
 *
 * An operation whose lease is live is refused (`{ outcome: 'refused', reason: 'live_lease' }`)
 * unless `force` is set; then it is released all the same. The running attempt's next fenced
 * write (a step, the final response, a lease renewal) finds its token gone and commits nothing,
 * and it stops with `OperationLeaseLostError`. What it did outside the database since its last
 * recorded step is unknown to the ledger; the resumed run sends the same downstream keys, so a
 * provider that honours them deduplicates it.
 *
 * It never waits for a call in flight: a row one holds (an expired entry being taken over, an
 * operation recording a step, an entry cleanup is deleting) is refused at once with
 * `{ reason: 'locked' }`, so that it never deletes an entry a call has just written, which the
 * operator never saw. A first claim of the key that has not committed yet is invisible to it: it
 * answers `nothing_to_release`, and that call's entry is committed afterwards. The released
 * result carries the deleted entry's `entryCreatedAt`, to compare with what `inspectKey` showed.
 *
 * @throws {InvalidIdempotencyOptionsError} for an empty scope or key, or an unknown option.
 * @throws {LedgerSchemaError} when the ledger is not migrated into `schema`; or
 *   (`problem: 'unsupported'`) when the database is not UTF-8 and cannot hold the scope or key.
 *
 * @example
 * ```ts
 * const result = await releaseKey(db, { scope: 'merchant:42', key: 'order-7' });
 * if (result.outcome === 'refused' && result.reason === 'live_lease') {
 *   // an attempt is running it right now; releaseKey(db, { ..., force: true }) fences it off
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
  // this transaction ends, and a refusal leaves the entry alone too. NOWAIT: a row a call holds
  // is refused at once (55P03), never waited for and then judged on what that call left.
  const { rows } = await sql<{ lease_remaining_ms: number | null }>`
    select case when o.lease_expires_at > clock_timestamp() then
             (extract(epoch from o.lease_expires_at - clock_timestamp()) * 1000)::float8
           end as lease_remaining_ms
      from ${sql.id(schema, 'operations')} o
     where o.scope = ${scope} and o.key = ${key} and o.state = 'in_progress'
       for update nowait`.execute(trx);
  const operation = rows[0];
  const leaseLive = operation !== undefined && operation.lease_remaining_ms !== null;
  if (leaseLive && !ref.force) {
    return {
      outcome: 'refused',
      reason: 'live_lease',
      leaseRemainingMs: operation.lease_remaining_ms ?? 0,
    };
  }
  // The fencing rules live with the operations: the same release an operator's
  // `operations release` makes, here in this transaction.
  const operationReleased =
    operation && (await releaseOperation(trx, { schema, scope, key }))
      ? { leaseWasLive: leaseLive }
      : null;
  // Locked with NOWAIT before the DELETE: a DELETE would wait for a call taking an expired entry
  // over, then (READ COMMITTED) delete the entry that call committed.
  const locked = await sql<{ created_at: Date }>`
    select l.created_at from ${sql.id(schema, 'ledger')} l
     where l.scope = ${scope} and l.key = ${key}
       for update nowait`.execute(trx);
  const entryCreatedAt = locked.rows[0]?.created_at ?? null;
  if (entryCreatedAt !== null) {
    await sql`
      delete from ${sql.id(schema, 'ledger')} where scope = ${scope} and key = ${key}`.execute(trx);
  }
  if (entryCreatedAt === null && operationReleased === null) {
    return { outcome: 'nothing_to_release' };
  }
  return {
    outcome: 'released',
    entryDeleted: entryCreatedAt !== null,
    entryCreatedAt,
    operationReleased,
  };
}
