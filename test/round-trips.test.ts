import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { responseEncryption, withIdempotency } from '../src/index.ts';
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
});
