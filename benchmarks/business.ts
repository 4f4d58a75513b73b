// The business transaction every variant wraps: insert one `charges` row and answer with a
// 210-byte response, the size of a small payment API response.
import { randomUUID } from 'node:crypto';
import { type Generated, type Kysely, sql, type Transaction } from 'kysely';

export interface ChargesTable {
  // bigserial: pg returns int8 as a string.
  id: Generated<string>;
  customer: string;
  amount: number;
  currency: string;
  created_at: Generated<Date>;
}

export interface BenchDB {
  charges: ChargesTable;
}

export interface ChargeRequest {
  customer: string;
  amount: number;
  currency: string;
}

export interface ChargeResponse {
  status: 201;
  body: {
    id: string;
    object: 'charge';
    customer: string;
    amount: number;
    currency: string;
    status: 'succeeded';
    description: string;
  };
}

/** Size of every response, as UTF-8 JSON. */
export const RESPONSE_BYTES = 210;

/** Every call is for one merchant and operation; keys are what tell calls apart. */
export const SCOPE = 'merchant:42:create-charge';

export async function createChargesTable(db: Kysely<BenchDB>): Promise<void> {
  await sql`
    create table charges (
      id bigserial primary key,
      customer text not null,
      amount integer not null,
      currency text not null,
      created_at timestamptz not null default now()
    )`.execute(db);
}

export function newChargeRequest(): ChargeRequest {
  return { customer: `cus_${randomUUID().slice(0, 14)}`, amount: 1999, currency: 'eur' };
}

/** The response for a charge, padded so that its JSON is exactly RESPONSE_BYTES long. */
export function chargeResponse(id: string, request: ChargeRequest): ChargeResponse {
  const response: ChargeResponse = {
    status: 201,
    body: { id, object: 'charge', ...request, status: 'succeeded', description: '' },
  };
  const unpadded = Buffer.byteLength(JSON.stringify(response));
  response.body.description = 'x'.repeat(Math.max(0, RESPONSE_BYTES - unpadded));
  return response;
}

/** The business write: one INSERT … RETURNING id inside the caller's transaction. */
export async function insertCharge(
  trx: Transaction<BenchDB>,
  request: ChargeRequest,
): Promise<ChargeResponse> {
  const { id } = await trx
    .insertInto('charges')
    .values(request)
    .returning('id')
    .executeTakeFirstOrThrow();
  return chargeResponse(id, request);
}

/** The bare business transaction: BEGIN; INSERT … RETURNING id; COMMIT. */
export function createCharge(db: Kysely<BenchDB>, request: ChargeRequest): Promise<ChargeResponse> {
  return db.transaction().execute((trx) => insertCharge(trx, request));
}
