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
  schema?: string;
}

/**
 * Ledger entries in primary-key order (scope, then key, byte by byte), filtered by scope prefix
 * and state. The prefix becomes a range of the primary key, so a listing reads only the scopes it
 * shows. The result holds keys: keep it out of logs.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid limit or state, or an unknown option.
 * @throws {LedgerSchemaError} when the ledger is not migrated into `schema`.
 *
 * @example
 * ```ts
 * const entries = await listEntries(db, { scopePrefix: 'merchant:42:', state: 'live', limit: 20 });
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
  const { from, to } = scopeRange(scopePrefix);
  return runAdmin(db as Kysely<unknown>, schema, async (executor) => {
    const { rows } = await sql<{
      scope: string;
      key: string;
      live: boolean;
      created_at: Date;
      expires_at: Date;
      expires_in_ms: number;
      response_bytes: number | null;
    }>`
      select l.scope, l.key, l.expires_at > now.now as live, l.created_at, l.expires_at,
             (extract(epoch from l.expires_at - now.now) * 1000)::float8 as expires_in_ms,
             octet_length(l.response::text) as response_bytes
        from ${sql.id(schema, 'ledger')} l, (select clock_timestamp() as now) now
       where l.scope >= ${from}
         and (${to}::text is null or l.scope < ${to}::text)
         and (${state} = 'all'
              or (${state} = 'live') = (l.expires_at > now.now))
       order by l.scope, l.key
       limit ${limit}`.execute(executor);
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
