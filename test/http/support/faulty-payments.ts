/**
 * Ways to break the idempotency contract, one at a time, for the reference server: each is a
 * mistake a real implementation makes, and the conformance kit must catch each with the check
 * named for it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { Kysely, Selectable } from 'kysely';
import {
  type Database,
  type PaymentsTable,
  toPayment,
} from '../../../examples/http/shared/payments.ts';
import {
  type HttpRequestFacts,
  type HttpResponseSnapshot,
  type ResolvedHttpOptions,
  runIdempotentRequest,
  sendSnapshot,
} from '../../../src/http/index.ts';
import { checkThenInsert, claimThenExecute, createClaimsTable } from './naive-idempotency.ts';

export const FAULTS = [
  // No idempotency at all: every request executes, with or without a key.
  'ignore-key',
  // A replay re-serialises the stored JSON (pretty-printed): the same data, other bytes.
  'replay-other-body',
  // The response goes out before the transaction commits, which then takes a while: a crash in
  // between leaves the client holding a payment that does not exist.
  'send-before-commit',
  // Problem details quote the Idempotency-Key header.
  'echo-key',
  // Looks the key up, then inserts if it was not there: two duplicates that arrive together
  // both find nothing and both execute. Right one request at a time.
  'check-then-insert',
  // Claims the key, executes, then stores the response, each on its own: a crash in between
  // leaves the key in progress (409) for ever.
  'claim-then-execute',
  // POST /payments never answers.
  'never-answer',
] as const;
export type Fault = (typeof FAULTS)[number];

/** How long a `send-before-commit` transaction stays open after its response went out. */
const SLOW_COMMIT_MS = 200;

export function parseFault(value: string | undefined): Fault | undefined {
  if (value === undefined || value === '') return undefined;
  const fault = FAULTS.find((name) => name === value);
  if (!fault) throw new Error(`FAULT must be one of ${FAULTS.join(', ')}`);
  return fault;
}

export interface PaymentRequestContext {
  db: Kysely<Database>;
  options: ResolvedHttpOptions<Database, IncomingMessage>;
  req: IncomingMessage;
  res: ServerResponse;
  facts: HttpRequestFacts;
  insert(trx: Kysely<Database>, key: string): Promise<Selectable<PaymentsTable>>;
}

/** Prepares the database for `fault`, when it needs tables of its own. */
export async function prepareFault(fault: Fault, db: Kysely<Database>): Promise<void> {
  if (fault === 'claim-then-execute') await createClaimsTable(db);
}

/** Answers POST /payments with `fault`. */
export async function faultyPayment(fault: Fault, context: PaymentRequestContext): Promise<void> {
  const { db, options, req, res, facts, insert } = context;
  if (fault === 'never-answer') return new Promise<void>(() => {});
  if (fault === 'check-then-insert') return checkThenInsert({ ...context, created });
  if (fault === 'claim-then-execute') return claimThenExecute({ ...context, created });
  if (fault === 'ignore-key') {
    const key = [facts.keyHeader ?? ''].flat().join(', ');
    const row = await db.transaction().execute((trx) => insert(trx, key));
    return sendSnapshot(res, created(row));
  }
  const outcome = await runIdempotentRequest(options, req, facts, async (trx, { key }) => {
    const response = created(await insert(trx, key));
    if (fault === 'send-before-commit') {
      sendSnapshot(res, response);
      await delay(SLOW_COMMIT_MS);
    }
    return response;
  });
  if (fault === 'send-before-commit' && outcome.kind === 'executed') return;
  let { response } = outcome;
  if (fault === 'replay-other-body' && outcome.kind === 'replayed') {
    const pretty = JSON.stringify(JSON.parse(Buffer.from(response.body).toString('utf8')), null, 2);
    response = { ...response, body: Buffer.from(pretty) };
  }
  if (fault === 'echo-key' && outcome.kind === 'refused') {
    const problem = JSON.parse(Buffer.from(response.body).toString('utf8')) as { detail: string };
    problem.detail += ` (Idempotency-Key: ${[facts.keyHeader].flat().join(', ')})`;
    response = { ...response, body: Buffer.from(JSON.stringify(problem)) };
  }
  sendSnapshot(res, response);
}

function created(row: Selectable<PaymentsTable>): HttpResponseSnapshot {
  return {
    status: 201,
    headers: { 'content-type': 'application/json', location: `/payments/${row.id}` },
    body: Buffer.from(JSON.stringify(toPayment(row))),
  };
}
