/**
 * Duplicates at REPEATABLE READ and SERIALIZABLE. There a transaction reads with the snapshot of
 * its first statement, so a claim cannot see an entry that committed after that snapshot was
 * taken: the claim must refuse (serialization failure) before fn runs, not let fn run a second
 * time and fail only at the record. fn may do more than write rows (an HTTP adapter's handler
 * sends a response and cannot run twice).
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { withIdempotency } from '../src/index.ts';
import { waitForLockWaiters } from './support/barrier.ts';
import {
  createPayment,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

describe.each(['repeatable read', 'serializable'] as const)('at %s', (isolationLevel) => {
  it('replays for a duplicate that waited for the first call, without running its fn', async () => {
    const key = uniqueKey();
    const { first, release } = await startHeldCall(fx.db, 's', key);
    let duplicateRuns = 0;
    const duplicate = withIdempotency(fx.db, { scope: 's', key, isolationLevel }, async (trx) => {
      duplicateRuns += 1;
      return createPayment('s', key)(trx);
    });
    await waitForLockWaiters(fx.db, 1);
    release();
    const { response } = await first;
    expect(await duplicate).toEqual({ response, replayed: true });
    expect(duplicateRuns).toBe(0);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("refuses, before fn runs, a claim in the caller's transaction whose snapshot predates the entry", async () => {
    const key = uniqueKey();
    const trx = await fx.db.startTransaction().setIsolationLevel(isolationLevel).execute();
    try {
      await sql`select 1`.execute(trx); // the transaction's snapshot is taken here
      await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
      let runs = 0;
      const call = withIdempotency(trx, { scope: 's', key }, async (t) => {
        runs += 1;
        return createPayment('s', key)(t);
      });
      await expect(call).rejects.toMatchObject({ code: '40001' });
      expect(runs).toBe(0);
    } finally {
      await trx.rollback().execute();
    }
    expect(await fx.countPayments(key)).toBe(1);
  });
});
