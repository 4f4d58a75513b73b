import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withIdempotency } from '../src/index.ts';
import { waitForLockWaiters } from './support/barrier.ts';
import { newPool } from './support/database.ts';
import {
  createPayment,
  type Database,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();
let pool: pg.Pool;
let db: Kysely<Database>;
const statements: string[] = [];

beforeAll(() => {
  pool = newPool(fx.url, 4);
  // Every statement pg sends is one network round trip: record them as they go out.
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text;
      statements.push(text.trim().split(/\s+/).slice(0, 3).join(' ').toLowerCase());
      return query(...args);
    };
  });
  db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
});
afterAll(async () => {
  await db?.destroy();
});

async function record<T>(work: () => Promise<T>) {
  statements.length = 0;
  await work();
  return [...statements];
}

describe('round trips', () => {
  it('a first execution costs the business statements plus five', async () => {
    const key = uniqueKey();
    const sent = await record(() =>
      withIdempotency(db, { scope: 's', key }, createPayment('s', key)),
    );
    expect(sent).toEqual([
      'select fingerprint, response::text', // lookup, outside the transaction
      'begin',
      'select claimed, fingerprint,', // claim_key()
      'insert into "payments"', // fn
      'update "idempotency"."ledger" set', // the response
      'commit',
    ]);
  });

  it('a replay costs one statement and no transaction', async () => {
    const key = uniqueKey();
    await withIdempotency(db, { scope: 's', key }, createPayment('s', key));
    const sent = await record(() =>
      withIdempotency(db, { scope: 's', key }, createPayment('s', key)),
    );
    expect(sent).toEqual(['select fingerprint, response::text']);
  });

  it('a duplicate that waited for the first call costs four statements', async () => {
    const key = uniqueKey();
    // The first call runs on the fixture's own pool, so only the duplicate's statements count.
    const { first, release } = await startHeldCall(fx.db, 's', key);
    const sent = await record(async () => {
      const duplicate = withIdempotency(db, { scope: 's', key }, createPayment('s', key));
      await waitForLockWaiters(fx.db, 1);
      release();
      expect((await duplicate).replayed).toBe(true);
    });
    await first;
    expect(sent).toEqual([
      'select fingerprint, response::text', // the lookup: the first call has not committed
      'begin',
      'select claimed, fingerprint,', // waits for the first call, then returns its entry
      'commit',
    ]);
  });

  it("inside the caller's transaction, a replay costs one statement", async () => {
    const key = uniqueKey();
    await withIdempotency(db, { scope: 's', key }, createPayment('s', key));
    const sent = await record(() =>
      db.transaction().execute(async (trx) => {
        const replay = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
        expect(replay.replayed).toBe(true);
      }),
    );
    expect(sent).toEqual(['begin', 'select claimed, fingerprint,', 'commit']);
  });

  it("inside the caller's transaction, the ledger adds two statements", async () => {
    const key = uniqueKey();
    const sent = await record(() =>
      db
        .transaction()
        .execute((trx) => withIdempotency(trx, { scope: 's', key }, createPayment('s', key))),
    );
    expect(sent).toEqual([
      'begin',
      'select claimed, fingerprint,',
      'insert into "payments"',
      'update "idempotency"."ledger" set',
      'commit',
    ]);
  });
});
