import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { responseEncryption, withIdempotency, withIdempotencyBatch } from '../src/index.ts';
import { waitForLockWaiters } from './support/barrier.ts';
import {
  createPayment,
  type Database,
  startHeldCall,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';
import { useStatementRecorder } from './support/statement-recorder.ts';

const fx = useLedgerFixture();
const recorder = useStatementRecorder<Database>(fx, 3);
const { record } = recorder;

describe('round trips', () => {
  it('a first execution costs the business statements plus five', async () => {
    const key = uniqueKey();
    const sent = await record(() =>
      withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key)),
    );
    expect(sent).toEqual([
      'select fingerprint, expires_at', // lookup, outside the transaction
      'begin',
      'select claimed, fingerprint,', // claim_key()
      'insert into "payments"', // fn
      'update "idempotency"."ledger" set', // the response
      'commit',
    ]);
  });

  it("with 'optimistic', a first execution costs the business statements plus four", async () => {
    const key = uniqueKey();
    const sent = await record(() =>
      withIdempotency(
        recorder.db,
        { scope: 's', key, onConcurrent: 'optimistic' },
        createPayment('s', key),
      ),
    );
    expect(sent).toEqual([
      'select fingerprint, expires_at', // lookup, outside the transaction
      'begin',
      'insert into "payments"', // fn
      'select "idempotency"."record_entry"($1, $2,', // the one INSERT of the finished entry
      'commit',
    ]);
  });

  it('a replay costs one statement and no transaction', async () => {
    const key = uniqueKey();
    await withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key));
    const sent = await record(() =>
      withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key)),
    );
    expect(sent).toEqual(['select fingerprint, expires_at']);
  });

  it('a duplicate that waited for the first call costs four statements', async () => {
    const key = uniqueKey();
    // The first call runs on the fixture's own pool, so only the duplicate's statements count.
    const { first, release } = await startHeldCall(fx.db, 's', key);
    const sent = await record(async () => {
      const duplicate = withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key));
      await waitForLockWaiters(fx.db, 1);
      release();
      expect((await duplicate).replayed).toBe(true);
    });
    await first;
    expect(sent).toEqual([
      'select fingerprint, expires_at', // the lookup: the first call has not committed
      'begin',
      'select claimed, fingerprint,', // waits for the first call, then returns its entry
      'commit',
    ]);
  });

  it('encryption adds no statement, to a first execution or a replay', async () => {
    const key = uniqueKey();
    const encryption = responseEncryption({ keys: [{ id: 'k', key: randomBytes(32) }] });
    const options = { scope: 's', key, encryption };
    const first = await record(() =>
      withIdempotency(recorder.db, options, createPayment('s', key)),
    );
    const replay = await record(() =>
      withIdempotency(recorder.db, options, createPayment('s', key)),
    );
    expect(first).toEqual([
      'select fingerprint, expires_at',
      'begin',
      'select claimed, fingerprint,',
      'insert into "payments"',
      'update "idempotency"."ledger" set',
      'commit',
    ]);
    expect(replay).toEqual(['select fingerprint, expires_at']);
  });

  it("inside the caller's transaction, a replay costs one statement", async () => {
    const key = uniqueKey();
    await withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key));
    const sent = await record(() =>
      recorder.db.transaction().execute(async (trx) => {
        const replay = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
        expect(replay.replayed).toBe(true);
      }),
    );
    expect(sent).toEqual(['begin', 'select claimed, fingerprint,', 'commit']);
  });

  it("inside the caller's transaction, the ledger adds two statements", async () => {
    const key = uniqueKey();
    const sent = await record(() =>
      recorder.db
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

  it('a batch costs four statements plus the business ones, however many keys it holds', async () => {
    const keys = Array.from({ length: 10 }, () => uniqueKey());
    await withIdempotency(
      recorder.db,
      { scope: 's', key: keys[0] as string },
      createPayment('s', keys[0] as string),
    );
    const sent = await record(() =>
      withIdempotencyBatch(
        recorder.db,
        { scope: 's' },
        keys.map((key) => ({ key })),
        async (trx, pending) => {
          const rows = await trx
            .insertInto('payments')
            .values(pending.map(({ key }) => ({ scope: 's', key, amount: 100 })))
            .returning('id')
            .execute();
          return rows.map(({ id }) => ({ paymentId: String(id) }));
        },
      ),
    );
    expect(sent).toEqual([
      'begin',
      'with claims as', // claim_key() for every key, one statement
      'insert into "payments"', // fn, one INSERT of its own for the nine new keys
      'with updated as', // every response, one statement
      'commit',
    ]);
  });

  it('a batch of replays only costs three statements', async () => {
    const keys = Array.from({ length: 5 }, () => uniqueKey());
    for (const key of keys) {
      await withIdempotency(recorder.db, { scope: 's', key }, createPayment('s', key));
    }
    const sent = await record(() =>
      withIdempotencyBatch(
        recorder.db,
        { scope: 's' },
        keys.map((key) => ({ key })),
        async () => [],
      ),
    );
    expect(sent).toEqual(['begin', 'with claims as', 'commit']);
  });
});
