import { type Kysely, sql } from 'kysely';
import { pairId, type Tally } from './client.ts';
import { type Database, type Payment, toPayment } from './schema.ts';

/** What the database says happened: the authoritative side of the summary. */
export interface Verification {
  paymentsWritten: number;
  /** Distinct (merchant, key) pairs among the payments. */
  distinctPairs: number;
  /** Payment rows beyond one per (merchant, key): must be 0. */
  duplicates: number;
  /** Distinct (merchant, key) pairs for which some client got a 201. */
  pairsWith201: number;
  /** 201 bodies that differ from the payment stored for their key; must be empty. */
  bodyMismatches: string[];
  /** Payments whose ledger entry is missing or replays something else; must be empty. */
  ledgerMismatches: string[];
}

export async function verify(db: Kysely<Database>, tally: Tally): Promise<Verification> {
  const rows = await db.selectFrom('payments').selectAll().execute();
  const stored = new Map<string, Payment>();
  for (const row of rows) stored.set(pairId(row.merchant_id, row.idempotency_key), toPayment(row));

  const bodyMismatches: string[] = [];
  for (const [id, bodies] of tally.received) {
    const payment = stored.get(id);
    const differing = bodies.filter((body) => !payment || !samePayment(body, payment));
    if (differing.length > 0) {
      bodyMismatches.push(
        `${id}: ${differing.length} of ${bodies.length} bodies differ from the stored payment ` +
          `${payment?.id ?? '(none)'}, e.g. ${differing[0]?.id}`,
      );
    }
  }

  return {
    paymentsWritten: rows.length,
    distinctPairs: stored.size,
    duplicates: rows.length - stored.size,
    pairsWith201: tally.received.size,
    bodyMismatches,
    ledgerMismatches: await checkLedger(db, stored),
  };
}

/** Each payment's ledger entry must replay exactly that payment. */
async function checkLedger(db: Kysely<Database>, stored: Map<string, Payment>): Promise<string[]> {
  const { rows } = await sql<{ scope: string; key: string; response: string | null }>`
    select scope, key, response::text as response from idempotency.ledger`.execute(db);
  const replays = new Map<string, string | null>();
  for (const row of rows) {
    const merchantId = /^merchant:(.+):create-payment$/.exec(row.scope)?.[1] ?? row.scope;
    replays.set(pairId(merchantId, row.key), row.response);
  }
  const mismatches: string[] = [];
  for (const [id, payment] of stored) {
    const response = replays.get(id);
    // What the adapter stores: the status, the allowlisted headers, and the body as sent.
    const replayed = response ? (JSON.parse(response) as { status: number; body: string }) : null;
    if (replayed?.status !== 201 || !samePayment(JSON.parse(replayed.body) as Payment, payment)) {
      mismatches.push(`${id}: ledger has ${response ?? 'no entry'}`);
    }
  }
  if (rows.length !== stored.size) {
    mismatches.push(`${rows.length} ledger entries for ${stored.size} payments`);
  }
  return mismatches;
}

function samePayment(a: Payment, b: Payment): boolean {
  return (
    a.id === b.id &&
    a.merchant_id === b.merchant_id &&
    a.amount_cents === b.amount_cents &&
    a.currency === b.currency &&
    a.idempotency_key === b.idempotency_key &&
    a.created_at === b.created_at
  );
}
