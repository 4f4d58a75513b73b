import type { Kysely } from 'kysely';
import {
  type ExecuteHandler,
  type HttpIdempotencyOptions,
  type HttpOutcome,
  type HttpRequestFacts,
  type HttpResponseSnapshot,
  resolveHttpOptions,
  runIdempotentRequest,
} from '../../../src/http/index.ts';
import type { IdempotencyError } from '../../../src/index.ts';
import type { Database } from '../../support/ledger-fixture.ts';

interface Req {
  merchant: string;
}

/** Resolved options for `db`, the library errors reported to onError, and a request runner. */
export function runnerFor(
  db: Kysely<Database>,
  extra: Partial<HttpIdempotencyOptions<Database, Req>> = {},
) {
  const reported: IdempotencyError[] = [];
  const options = resolveHttpOptions<Database, Req>(
    {
      db,
      scope: (req) => `merchant:${req.merchant}`,
      onError: (error) => reported.push(error),
      ...extra,
    },
    'test',
  );
  const run = (key: string | undefined, execute: ExecuteHandler<Database>, body: unknown = {}) =>
    runIdempotentRequest(options, { merchant: 'm1' }, facts(key, body), execute);
  return { options, reported, run };
}

/** What an adapter knows of a `POST /payments` with this key header and body. */
export function facts(key: HttpRequestFacts['keyHeader'], body: unknown): HttpRequestFacts {
  return { method: 'POST', target: '/payments', keyHeader: key, body, header: () => undefined };
}

/** A handler that inserts a payment and answers with `response` (201, three headers, by default). */
export function createPayment(response: Partial<HttpResponseSnapshot> = {}) {
  let runs = 0;
  const execute: ExecuteHandler<Database> = async (trx, { scope, key }) => {
    runs += 1;
    const row = await trx
      .insertInto('payments')
      .values({ scope, key, amount: 100 })
      .returning('id')
      .executeTakeFirstOrThrow();
    return {
      status: 201,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        location: `/payments/${row.id}`,
        'x-trace-id': `trace-${runs}`,
      },
      // Text and bytes that are not UTF-8, so both stored forms are exercised.
      body: Buffer.concat([Buffer.from(`{"id":"${row.id}","note":"café"}`), Buffer.from([0xff])]),
      ...response,
    };
  };
  return Object.assign(execute, { runs: () => runs });
}

/** The problem details of a refused outcome. */
export function problemOf(outcome: HttpOutcome) {
  return JSON.parse(Buffer.from(outcome.response.body).toString('utf8'));
}
