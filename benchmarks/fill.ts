// Bulk-fills a ledger with generate_series, fast enough for a million rows, with rows shaped like
// the ones withIdempotency writes: random UUID keys, 1000 scopes, a 32-byte fingerprint and a
// 210-byte response. Row i's scope and key can be recomputed here, so that it can be replayed.
import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { type BenchDB, type ChargeRequest, chargeResponse } from './business.ts';
import { fingerprintRequest } from './library.ts';

/** The request every filled row was "made" with: replays of filled rows must send it. */
export const FILL_REQUEST: ChargeRequest = {
  customer: 'cus_filled',
  amount: 1999,
  currency: 'eur',
};

const CHUNK_ROWS = 250_000;

export function filledScope(i: number): string {
  return `merchant:${i % 1000}:create-charge`;
}

/** md5('k' || i)::uuid::text, as the fill computes it. */
export function filledKey(i: number): string {
  const hex = createHash('md5').update(`k${i}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Inserts rows `from`..`to` (inclusive). Live rows expire in about 24 h, expired ones expired
 * over an hour ago; expires_at differs from row to row, as clock timestamps do (equal values would
 * let btree deduplication shrink the expiry index unrealistically).
 */
export async function fillLedger(
  db: Kysely<BenchDB>,
  schema: string,
  from: number,
  to: number,
  state: 'live' | 'expired',
): Promise<void> {
  const fingerprint = fingerprintRequest(FILL_REQUEST);
  const response = JSON.stringify(chargeResponse('1', FILL_REQUEST));
  const base = state === 'live' ? sql`interval '24 hours'` : sql`interval '-1 hour'`;
  for (let start = from; start <= to; start += CHUNK_ROWS) {
    const end = Math.min(to, start + CHUNK_ROWS - 1);
    await sql`
      insert into ${sql.id(schema, 'ledger')}
             (scope, key, fingerprint, response, created_at, expires_at)
      select 'merchant:' || (i % 1000) || ':create-charge',
             md5('k' || i)::uuid::text,
             ${fingerprint},
             ${response}::json,
             expires_at - interval '24 hours',
             expires_at
        from generate_series(${start}::int, ${end}::int) as i,
             lateral (select statement_timestamp() + ${base} - i * interval '1 millisecond'
                      as expires_at) as e`.execute(db);
  }
}

export async function vacuumAnalyze(db: Kysely<BenchDB>, schema: string): Promise<void> {
  await sql`vacuum analyze ${sql.id(schema, 'ledger')}`.execute(db);
}
