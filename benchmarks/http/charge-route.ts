// What every framework's two routes share, so that the bare route and the idempotent one differ
// by the adapter alone: the paths, the body's validation, the business write (one INSERT in the
// request's transaction) and the response (201, JSON, Location).
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';
import {
  type ChargeRequest,
  type ChargeResponse,
  type ChargesTable,
  chargeResponse,
  SCOPE,
} from '../business.ts';

/** The route without idempotency: the same work in a transaction of its own. */
export const BARE_PATH = '/bare/charges';
/** The route through the framework's adapter. */
export const IDEMPOTENT_PATH = '/idempotent/charges';

/** The HTTP section's own business table, so that its rows are counted apart from the others. */
export interface HttpBenchDB {
  http_charges: ChargesTable;
}

export async function createHttpChargesTable<DB>(db: Kysely<DB>): Promise<void> {
  await sql`
    create table http_charges (
      id bigserial primary key,
      customer text not null,
      amount integer not null,
      currency text not null,
      created_at timestamptz not null default now()
    )`.execute(db);
}

// `customer` carries the tag of the load run that sent it (`cus_<tag>_<n>`): rows are counted
// per run at the end of the section.
const chargeRequest = z.strictObject({
  customer: z.string().regex(/^cus_[a-z0-9]{1,16}_[0-9]{1,12}$/),
  amount: z.int().positive().max(100_000_000),
  currency: z.literal('eur'),
});

/** The parsed JSON body as a charge request, or `undefined` when it is not one (a 400). */
export function parseChargeRequest(body: unknown): ChargeRequest | undefined {
  const result = chargeRequest.safeParse(body);
  return result.success ? result.data : undefined;
}

/** The 400 both routes answer to a body that is not a charge request. */
export const INVALID_BODY = {
  status: 400,
  contentType: 'application/problem+json',
  body: { type: 'about:blank', title: 'Invalid charge request', status: 400 },
} as const;

export interface CreatedCharge {
  location: string;
  body: ChargeResponse['body'];
}

/** The business write, in the request's transaction: one INSERT … RETURNING id. */
export async function insertHttpCharge(
  trx: Transaction<HttpBenchDB>,
  request: ChargeRequest,
): Promise<CreatedCharge> {
  const { id } = await trx
    .insertInto('http_charges')
    .values(request)
    .returning('id')
    .executeTakeFirstOrThrow();
  return { location: `/charges/${id}`, body: chargeResponse(id, request).body };
}

/** The bare route's work: the same write in a transaction of its own. */
export function createHttpCharge(
  db: Kysely<HttpBenchDB>,
  request: ChargeRequest,
): Promise<CreatedCharge> {
  return db.transaction().execute((trx) => insertHttpCharge(trx, request));
}

/** The adapters' options: every request is one merchant's; keys are what tell them apart. */
export function idempotencyOptions(db: Kysely<HttpBenchDB>) {
  return { db, scope: () => SCOPE };
}
