// WAL written by the whole server between two points: what a write path costs the disk and the
// CPU that encodes it, and what a replica has to replay.
import { type Kysely, sql } from 'kysely';
import type { BenchDB } from './business.ts';

export async function walPosition(db: Kysely<BenchDB>): Promise<string> {
  const { rows } = await sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(db);
  return rows[0]?.lsn ?? '0/0';
}

export async function walBytesSince(db: Kysely<BenchDB>, position: string): Promise<number> {
  const { rows } = await sql<{ bytes: string }>`
    select pg_wal_lsn_diff(pg_current_wal_lsn(), ${position}::pg_lsn) as bytes`.execute(db);
  return Number(rows[0]?.bytes);
}

/**
 * WAL written for this database alone since `position`, read back with pg_walinspect: records
 * touching its relations, and every record (commits) of the transactions that wrote those.
 * Other databases busy on the same server (a test run) do not count, as they do in
 * {@link walBytesSince}. Undefined when pg_walinspect cannot be installed (not a superuser, or
 * the contrib package is missing), or when the range is no longer on disk: then only the
 * server-wide figure is known.
 */
export async function ownWalBytesSince(
  db: Kysely<BenchDB>,
  position: string,
): Promise<number | undefined> {
  if (!(await walInspectAvailable(db))) return undefined;
  // pg_walinspect refuses an empty range: nothing was written (a replay), or not flushed yet.
  const { rows: flushed } = await sql<{ ahead: boolean }>`
    select pg_current_wal_flush_lsn() > ${position}::pg_lsn as ahead`.execute(db);
  if (!flushed[0]?.ahead) return 0;
  const read = sql<{ bytes: string }>`
    with records as (
      select xid, record_length,
             block_ref like '%/' || (select oid from pg_database
                                      where datname = current_database()) || '/%' as ours
        from pg_get_wal_records_info(${position}::pg_lsn, pg_current_wal_flush_lsn())
    )
    select coalesce(sum(record_length), 0) as bytes from records
     where ours or (xid <> '0'::xid and xid in (select xid from records where ours))`;
  try {
    const { rows } = await read.execute(db);
    return Number(rows[0]?.bytes);
  } catch (error) {
    // A checkpoint recycled the range's first segments (other databases wrote a lot meanwhile):
    // this window is unknown, the caller falls back to the server's figure.
    if ((error as { code?: string }).code === '58P01') return undefined;
    throw error;
  }
}

let walInspect: Promise<boolean> | undefined;
/** Installs pg_walinspect in the benchmark database, once; false when it cannot. */
export function walInspectAvailable(db: Kysely<BenchDB>): Promise<boolean> {
  walInspect ??= sql`create extension if not exists pg_walinspect`.execute(db).then(
    () => true,
    () => false,
  );
  return walInspect;
}
