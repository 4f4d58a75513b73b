import { type Kysely, sql } from 'kysely';
import { listEntriesOptionsSchema, parseAdminOptions } from './admin-options.ts';
import { runAdmin } from './admin-sql.ts';
import { scopeRange } from './scope-range.ts';

/** A ledger entry as {@link listEntries} shows it (its key included: an operator asked for it). */
export interface EntrySummary {
  scope: string;
  key: string;
  state: 'live' | 'expired';
  createdAt: Date;
  expiresAt: Date;
  /** Milliseconds until it expires, by the database clock; negative once it has. */
  expiresInMs: number;
  /**
   * Bytes of the stored text (with encryption, of the encrypted form); null when `fn` returned
   * nothing and it is stored in clear.
   */
  responseBytes: number | null;
}

/** Options of {@link listEntries}. */
export interface ListEntriesOptions {
  /** Only scopes that start with this text, taken literally (`%` and `_` are not patterns). */
  scopePrefix?: string;
  /** `live`, `expired` (waiting for cleanup), or `all` (the default). */
  state?: 'all' | 'live' | 'expired';
  /** At most this many entries (1 to 1000000). Default 100. */
  limit?: number;
  /** Postgres schema that holds the ledger (the one you migrated). Default `idempotency`. */
  schema?: string;
}

/**
 * Ledger entries in primary-key order (scope, then key, byte by byte), filtered by scope prefix
 * and state. The prefix becomes a range of the primary key, so a listing reads only the scopes it
 * shows. `state: 'expired'` without a prefix (the cleanup backlog) is the exception: it lists the
 * entries oldest expiry first, read through `ledger_expires_at_idx`, so it reads only expired
 * entries rather than walking the primary key past every live one. The result holds keys: keep
 * it out of logs.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid limit or state, or an unknown option.
 * @throws {LedgerSchemaError} when the ledger is not migrated into `schema`; or
 *   (`problem: 'unsupported'`) when the database is not UTF-8 and cannot hold the prefix.
 *
 * @example
 * ```ts
 * const entries = await listEntries(db, { scopePrefix: 'merchant:42:', state: 'live', limit: 20 });
 * const backlog = await listEntries(db, { state: 'expired', limit: 20 }); // oldest expiry first
 * ```
 */
export async function listEntries<DB>(
  db: Kysely<DB>,
  options: ListEntriesOptions = {},
): Promise<EntrySummary[]> {
  const { scopePrefix, state, limit, schema } = parseAdminOptions(
    listEntriesOptionsSchema,
    options,
    'listEntries',
  );
  return runAdmin(db as Kysely<unknown>, schema, async (executor) => {
    const { rows } = await (state === 'expired' && scopePrefix === ''
      ? selectBacklog(schema, limit)
      : selectByScope(schema, scopePrefix, state, limit)
    ).execute(executor);
    return rows.map((row) => ({
      scope: row.scope,
      key: row.key,
      state: row.live ? 'live' : 'expired',
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      expiresInMs: row.expires_in_ms,
      responseBytes: row.response_bytes,
    }));
  });
}

interface EntryRow {
  scope: string;
  key: string;
  live: boolean;
  created_at: Date;
  expires_at: Date;
  expires_in_ms: number;
  response_bytes: number | null;
}

// statement_timestamp(), as delete_expired uses: stable within the statement, so a comparison
// with it can be an index condition (clock_timestamp() is volatile and never is).

/** A range of the primary key, in its order, filtered by state. */
function selectByScope(schema: string, scopePrefix: string, state: string, limit: number) {
  const { from, to } = scopeRange(scopePrefix);
  return sql<EntryRow>`
    select l.scope, l.key, l.expires_at > statement_timestamp() as live, l.created_at,
           l.expires_at,
           (extract(epoch from l.expires_at - statement_timestamp()) * 1000)::float8
             as expires_in_ms,
           octet_length(l.response::text) as response_bytes
      from ${sql.id(schema, 'ledger')} l
     where l.scope >= ${from}
       and (${to}::text is null or l.scope < ${to}::text)
       and (${state} = 'all'
            or (${state} = 'live') = (l.expires_at > statement_timestamp()))
     order by l.scope, l.key
     limit ${limit}`;
}

/** The expired entries of every scope, oldest expiry first, through ledger_expires_at_idx. */
function selectBacklog(schema: string, limit: number) {
  return sql<EntryRow>`
    select l.scope, l.key, false as live, l.created_at, l.expires_at,
           (extract(epoch from l.expires_at - statement_timestamp()) * 1000)::float8
             as expires_in_ms,
           octet_length(l.response::text) as response_bytes
      from ${sql.id(schema, 'ledger')} l
     where l.expires_at <= statement_timestamp()
     order by l.expires_at, l.scope, l.key
     limit ${limit}`;
}
