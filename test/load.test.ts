import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdempotencyConflictError, withIdempotency } from '../src/index.ts';
import { countCheckedOutClients, newPool } from './support/database.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();
let pool: pg.Pool;
let db: Kysely<Database>;
beforeAll(() => {
  pool = newPool(fx.url, 10);
  db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
});
afterAll(async () => {
  await db?.destroy();
});

describe('load', () => {
  it('500 concurrent callers on 10 connections all finish, with no duplicate and no leak', async () => {
    const prefix = uniqueKey('load');
    const hotKeys = Array.from({ length: 5 }, (_, i) => `${prefix}-hot-${i}`);
    const keys = [
      ...Array.from({ length: 250 }, (_, i) => `${prefix}-fresh-${i}`),
      ...Array.from({ length: 250 }, (_, i) => hotKeys[i % hotKeys.length] as string),
    ];
    const outcomes = await Promise.allSettled(
      keys.map((key) =>
        // The hot keys' work is slow and their duplicates' wait short: those that queue behind
        // it give up. Fresh keys keep the default wait: a 50 ms lock_timeout can also run out on
        // the ledger's table-extension lock when the machine is saturated (see the README's
        // limits), which is not what this test is about.
        withIdempotency(
          db,
          { scope: 'load', key, ...(hotKeys.includes(key) ? { waitTimeoutMs: 50 } : {}) },
          async (trx) => {
            if (hotKeys.includes(key)) await sql`select pg_sleep(0.3)`.execute(trx);
            return createPayment('load', key)(trx);
          },
        ),
      ),
    );

    const responses = new Map<string, string>();
    outcomes.forEach((outcome, index) => {
      const key = keys[index] as string;
      if (outcome.status === 'rejected') {
        // The only way a call may fail here: a typed, retryable timeout.
        expect(outcome.reason).toBeInstanceOf(IdempotencyConflictError);
        expect(outcome.reason).toMatchObject({ reason: 'wait_timeout', key });
        return;
      }
      const response = JSON.stringify(outcome.value.response);
      expect(responses.get(key) ?? response).toBe(response);
      responses.set(key, response);
    });

    // Both paths ran: some duplicates timed out, and every other call got an answer.
    expect(outcomes.some((outcome) => outcome.status === 'rejected')).toBe(true);

    const { rows } = await sql<{ key: string; n: number }>`
      select key, count(*)::int as n from payments where scope = 'load' group by key`.execute(
      fx.db,
    );
    expect(rows.filter((row) => row.n !== 1)).toEqual([]);
    expect(rows).toHaveLength(255);

    // The pool is back to idle, nothing waits for it, and it still serves calls.
    expect(countCheckedOutClients(pool)).toBe(0);
    expect(pool.waitingCount).toBe(0);
    for (const key of hotKeys) {
      const replay = await withIdempotency(db, { scope: 'load', key }, createPayment('load', key));
      expect(replay.replayed).toBe(true);
    }
  });
});
