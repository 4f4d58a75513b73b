/**
 * Two designs of idempotency that live outside the business transaction, as many libraries
 * build it, for the reference server's faults. Both pass a test that sends one request at a
 * time; the conformance kit must still catch them.
 */
import type { ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { type Kysely, type Selectable, sql } from 'kysely';
import type {
  Database,
  PaymentRequest,
  PaymentsTable,
} from '../../../examples/http/shared/payments.ts';
import {
  type HttpRequestFacts,
  type HttpResponseSnapshot,
  problemResponseFor,
  readIdempotencyKey,
  sendSnapshot,
} from '../../../src/http/index.ts';

/** How long a `claim-then-execute` request works between its claim and its stored response. */
const CLAIMED_WORK_MS = 200;

import { IdempotencyConflictError, IdempotencyKeyReusedError } from '../../../src/index.ts';

export interface NaiveContext {
  db: Kysely<Database>;
  res: ServerResponse;
  facts: HttpRequestFacts;
  insert(trx: Kysely<Database>, key: string): Promise<Selectable<PaymentsTable>>;
  created(row: Selectable<PaymentsTable>): HttpResponseSnapshot;
}

/**
 * Looks the key up among the payments, and inserts when it is not there: duplicates that arrive
 * together all find nothing, and all execute.
 */
export async function checkThenInsert(context: NaiveContext): Promise<void> {
  const { db, res, facts, insert, created } = context;
  const merchantId = facts.header('merchant-id') ?? '';
  const key = keyOrProblem(facts, res);
  if (key === undefined) return;
  const existing = await db
    .selectFrom('payments')
    .selectAll()
    .where('merchant_id', '=', merchantId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst();
  if (!existing) return sendSnapshot(res, created(await insert(db, key)));
  if (existing.amount_cents !== (facts.body as PaymentRequest).amount_cents) {
    return sendProblem(res, new IdempotencyKeyReusedError({ scope: merchantId, key }));
  }
  sendSnapshot(res, replayOf(created(existing)));
}

/** The table of `claimThenExecute`; the reference server creates it when it starts. */
export async function createClaimsTable(db: Kysely<Database>): Promise<void> {
  await sql`
    create table if not exists payment_claims (
      merchant_id text not null,
      key text not null,
      amount_cents integer not null,
      response text,
      primary key (merchant_id, key)
    )`.execute(db);
}

/**
 * Claims the key in one statement, executes in another, stores the response in a third: right
 * under concurrency (the claim is atomic), but a crash between the claim and the stored response
 * leaves the key "in progress" for ever, answered 409.
 */
export async function claimThenExecute(context: NaiveContext): Promise<void> {
  const { db, res, facts, insert, created } = context;
  const merchantId = facts.header('merchant-id') ?? '';
  const key = keyOrProblem(facts, res);
  if (key === undefined) return;
  const amount = (facts.body as PaymentRequest).amount_cents;
  const claimed = await sql`
    insert into payment_claims (merchant_id, key, amount_cents)
    values (${merchantId}, ${key}, ${amount})
    on conflict do nothing`.execute(db);
  if (claimed.numAffectedRows === 0n) {
    const { rows } = await sql<{ amount_cents: number; response: string | null }>`
      select amount_cents, response from payment_claims
       where merchant_id = ${merchantId} and key = ${key}`.execute(db);
    const claim = rows[0];
    if (claim?.amount_cents !== amount) {
      return sendProblem(res, new IdempotencyKeyReusedError({ scope: merchantId, key }));
    }
    if (claim.response === null) {
      const error = new IdempotencyConflictError({ scope: merchantId, key, reason: 'in_flight' });
      return sendProblem(res, error);
    }
    const stored = JSON.parse(claim.response) as { headers: Record<string, string>; body: string };
    const response = { status: 201, headers: stored.headers, body: Buffer.from(stored.body) };
    return sendSnapshot(res, replayOf(response));
  }
  // The work between the claim and the stored response takes a while (a call to a provider):
  // a crash lands in it, and leaves the claim in progress for ever.
  await delay(CLAIMED_WORK_MS);
  const response = created(await insert(db, key));
  const stored = { headers: response.headers, body: Buffer.from(response.body).toString('utf8') };
  await sql`
    update payment_claims set response = ${JSON.stringify(stored)}
     where merchant_id = ${merchantId} and key = ${key}`.execute(db);
  sendSnapshot(res, response);
}

function keyOrProblem(facts: HttpRequestFacts, res: ServerResponse): string | undefined {
  try {
    return readIdempotencyKey(facts.keyHeader);
  } catch (error) {
    sendProblem(res, error);
    return undefined;
  }
}

function replayOf(response: HttpResponseSnapshot): HttpResponseSnapshot {
  return { ...response, headers: { ...response.headers, 'idempotent-replayed': 'true' } };
}

function sendProblem(res: ServerResponse, error: unknown): void {
  const problem = problemResponseFor(error);
  if (!problem) throw error;
  res.writeHead(problem.status, problem.headers).end(problem.body);
}
