import { type Kysely, sql } from 'kysely';
import { listStuckOptionsSchema, parseAdminOptions } from './admin-options.ts';
import { runAdmin } from './admin-sql.ts';
import { scopeRange } from './scope-range.ts';

/** An operation in progress that needs a look, as {@link listStuckOperations} shows it. */
export interface StuckOperation {
  scope: string;
  key: string;
  name: string;
  attempts: number;
  fencingToken: string;
  /** 0 once the lease ran out; null when it was released (an attempt failed, or an operator). */
  leaseRemainingMs: number | null;
  /** Why it is listed: no attempt holds it, and/or its attempts reached `minAttempts`. */
  reasons: ('no_lease' | 'attempts')[];
  createdAt: Date;
  updatedAt: Date;
  /** Milliseconds since it was created, by the database clock. */
  ageMs: number;
}

/** Options of {@link listStuckOperations}. */
export interface ListStuckOptions {
  /** Only scopes that start with this text, taken literally. */
  scopePrefix?: string;
  /** Attempts from which an operation counts as failing on every resume. Default 5. */
  minAttempts?: number;
  /** At most this many operations (1 to 1000000). Default 100. */
  limit?: number;
  /** Postgres schema that holds the ledger (the one you migrated). Default `idempotency`. */
  schema?: string;
}

/**
 * Operations in progress, oldest first, whose lease ran out or was released (no attempt runs
 * them: a completer should resume them) or whose attempts reached `minAttempts` (they fail on
 * every resume). The result holds keys: keep it out of logs.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid limit or minAttempts.
 * @throws {LedgerSchemaError} when the operation tables are not migrated into `schema`; or
 *   (`problem: 'unsupported'`) when the database is not UTF-8 and cannot hold the prefix.
 *
 * @example
 * ```ts
 * for (const op of await listStuckOperations(db, { minAttempts: 3 })) {
 *   console.log(op.name, op.attempts, op.reasons.join('+'));
 * }
 * ```
 */
export async function listStuckOperations<DB>(
  db: Kysely<DB>,
  options: ListStuckOptions = {},
): Promise<StuckOperation[]> {
  const { scopePrefix, minAttempts, limit, schema } = parseAdminOptions(
    listStuckOptionsSchema,
    options,
    'listStuckOperations',
  );
  const { from, to } = scopeRange(scopePrefix);
  return runAdmin(db as Kysely<unknown>, schema, async (executor) => {
    const { rows } = await sql<{
      scope: string;
      key: string;
      name: string;
      attempts: number;
      fencing_token: string;
      lease_remaining_ms: number | null;
      no_lease: boolean;
      created_at: Date;
      updated_at: Date;
      age_ms: number;
    }>`
      select o.scope, o.key, o.name, o.attempts, o.fencing_token::text as fencing_token,
             case when o.lease_expires_at is not null then
               greatest(0, extract(epoch from o.lease_expires_at - now.now) * 1000)::float8
             end as lease_remaining_ms,
             coalesce(o.lease_expires_at <= now.now, true) as no_lease,
             o.created_at, o.updated_at,
             (extract(epoch from now.now - o.created_at) * 1000)::float8 as age_ms
        from ${sql.id(schema, 'operations')} o, (select clock_timestamp() as now) now
       where o.state = 'in_progress'
         and (o.lease_expires_at is null or o.lease_expires_at <= now.now
              or o.attempts >= ${minAttempts})
         and o.scope >= ${from}
         and (${to}::text is null or o.scope < ${to}::text)
       order by o.created_at, o.scope, o.key
       limit ${limit}`.execute(executor);
    return rows.map((row) => ({
      scope: row.scope,
      key: row.key,
      name: row.name,
      attempts: row.attempts,
      fencingToken: row.fencing_token,
      leaseRemainingMs: row.lease_remaining_ms,
      reasons: [
        ...(row.no_lease ? ['no_lease' as const] : []),
        ...(row.attempts >= minAttempts ? ['attempts' as const] : []),
      ],
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      ageMs: row.age_ms,
    }));
  });
}
