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
