// Bytes per ledger row with a 210-byte response: the row itself (pg_column_size), and what the
// heap, the primary key and the expiry index grow by per row.
import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { type BenchDB, insertCharge, newChargeRequest, RESPONSE_BYTES, SCOPE } from './business.ts';
import { migrate, withIdempotency } from './library.ts';
import { runCount } from './measure.ts';

const SCHEMA = 'bench_storage';
const COMPACT_SCHEMA = 'bench_storage_compact';
const OPTIMISTIC_SCHEMA = 'bench_storage_optimistic';
const WRITERS = 4;

export interface RelationSizes {
  heap: number;
  primaryKey: number;
  expiryIndex: number;
  /** pg_indexes_size: all indexes of the table. */
  indexes: number;
}

export interface Footprint {
  rows: number;
  before: RelationSizes;
  after: RelationSizes;
  /** Average pg_column_size of a whole row, and of its response column. */
  rowBytes: number;
  responseBytes: number;
  perRow: { heap: number; primaryKey: number; expiryIndex: number; total: number };
}

export interface StorageResult {
  responseJsonBytes: number;
  /** Written by withIdempotency: a claim INSERT, then an UPDATE that records the response. */
  written: Footprint;
  /** Written with onConcurrent 'optimistic': one INSERT of the finished entry per row. */
  optimistic: Footprint;
  /** The same rows copied in one INSERT … SELECT: no dead versions, as after VACUUM reuses space. */
  compact: Footprint;
}

export async function measureStorage(
  db: Kysely<BenchDB>,
  url: string,
  rows: number,
): Promise<StorageResult> {
  await migrate({ connectionString: url, schema: SCHEMA });
  await migrate({ connectionString: url, schema: COMPACT_SCHEMA });
  await migrate({ connectionString: url, schema: OPTIMISTIC_SCHEMA });

  const write = async (schema: string, onConcurrent: 'wait' | 'optimistic') => {
    const before = await relationSizes(db, schema);
    await runCount(WRITERS, rows, () => {
      const request = newChargeRequest();
      return withIdempotency(
        db,
        { scope: SCOPE, key: randomUUID(), request, schema, onConcurrent },
        (trx) => insertCharge(trx, request),
      );
    });
    return footprint(db, schema, before);
  };
  const written = await write(SCHEMA, 'wait');
  const optimistic = await write(OPTIMISTIC_SCHEMA, 'optimistic');

  const beforeCompact = await relationSizes(db, COMPACT_SCHEMA);
  await sql`
    insert into ${sql.id(COMPACT_SCHEMA, 'ledger')}
    select * from ${sql.id(SCHEMA, 'ledger')}`.execute(db);
  const compact = await footprint(db, COMPACT_SCHEMA, beforeCompact);
  return { responseJsonBytes: RESPONSE_BYTES, written, optimistic, compact };
}

async function footprint(
  db: Kysely<BenchDB>,
  schema: string,
  before: RelationSizes,
): Promise<Footprint> {
  const after = await relationSizes(db, schema);
  const { rows } = await sql<{ rows: string; row_bytes: number; response_bytes: number }>`
    select count(*) as rows,
           avg(pg_column_size(l.*))::float8 as row_bytes,
           avg(pg_column_size(l.response))::float8 as response_bytes
      from ${sql.id(schema, 'ledger')} l`.execute(db);
  const stats = rows[0];
  const count = Number(stats?.rows);
  const per = (field: keyof RelationSizes) => (after[field] - before[field]) / count;
  return {
    rows: count,
    before,
    after,
    rowBytes: stats?.row_bytes ?? Number.NaN,
    responseBytes: stats?.response_bytes ?? Number.NaN,
    perRow: {
      heap: per('heap'),
      primaryKey: per('primaryKey'),
      expiryIndex: per('expiryIndex'),
      total: per('heap') + per('indexes'),
    },
  };
}

export async function relationSizes(db: Kysely<BenchDB>, schema: string): Promise<RelationSizes> {
  const name = (relation: string) => sql`(quote_ident(${schema}) || '.' || ${relation})::regclass`;
  const { rows } = await sql<Record<keyof RelationSizes, string>>`
    select pg_relation_size(${name('ledger')}) as "heap",
           pg_relation_size(${name('ledger_pkey')}) as "primaryKey",
           pg_relation_size(${name('ledger_expires_at_idx')}) as "expiryIndex",
           pg_indexes_size(${name('ledger')}) as "indexes"`.execute(db);
  const row = rows[0];
  return {
    heap: Number(row?.heap),
    primaryKey: Number(row?.primaryKey),
    expiryIndex: Number(row?.expiryIndex),
    indexes: Number(row?.indexes),
  };
}
