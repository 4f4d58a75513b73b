import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyConflictError,
  UnstorableResponseError,
  withIdempotency,
} from '../src/index.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

describe('one key twice in one transaction', () => {
  it('refuses a nested call for a key the outer call has claimed, with a 409', async () => {
    const key = uniqueKey();
    let nested: unknown;
    const outer = await fx.db.transaction().execute((trx) =>
      withIdempotency(trx, { scope: 's', key }, async () => {
        const response = await createPayment('s', key)(trx);
        nested = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key)).catch(
          (error: unknown) => error,
        );
        return response;
      }),
    );
    expect(nested).toBeInstanceOf(IdempotencyConflictError);
    expect(nested).toMatchObject({ status: 409, reason: 'same_transaction' });
    // The refusal wrote nothing and left the transaction usable: the outer call committed.
    expect(outer.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
    const replay = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(replay).toEqual({ response: outer.response, replayed: true });
  });

  it('refuses a concurrent call on the same transaction instead of replaying nothing', async () => {
    const key = uniqueKey();
    const results = await fx.db.transaction().execute((trx) =>
      Promise.allSettled([
        withIdempotency(trx, { scope: 's', key }, async () => {
          const response = await createPayment('s', key)(trx);
          // Give the second call's claim a turn on the connection before this one records.
          await sql`select 1`.execute(trx);
          return response;
        }),
        withIdempotency(trx, { scope: 's', key }, createPayment('s', key)),
      ]),
    );
    const [first, second] = results;
    expect(first.status).toBe('fulfilled');
    expect(second.status).toBe('rejected');
    expect(second.status === 'rejected' && second.reason).toMatchObject({
      reason: 'same_transaction',
    });
    expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countEntries(key)).toBe(1);
  });

  it('replays a call that completed earlier in the same transaction', async () => {
    const key = uniqueKey();
    const [first, second] = await fx.db.transaction().execute(async (trx) => {
      const a = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
      const b = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
      return [a, b];
    });
    expect(first?.replayed).toBe(false);
    expect(second).toEqual({ response: first?.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('executes again after a savepoint that held the claim was rolled back', async () => {
    const key = uniqueKey();
    const trx = await fx.db.startTransaction().execute();
    const savepoint = await trx.savepoint('attempt').execute();
    await withIdempotency(savepoint, { scope: 's', key }, async () => {
      await createPayment('s', key)(savepoint);
      // Roll back while the claim is still unrecorded, from inside: the claim and its mark vanish.
      await savepoint.rollbackToSavepoint('attempt').execute();
      await savepoint.savepoint('attempt').execute();
      return 'ignored';
    }).catch(() => undefined);
    await savepoint.rollbackToSavepoint('attempt').execute();
    const retried = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
    await trx.commit().execute();
    expect(retried.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countEntries(key)).toBe(1);
  });
});

describe('fn that ends the transaction itself', () => {
  it('reports a ROLLBACK sent by fn instead of returning a response that was never stored', async () => {
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      await sql`rollback`.execute(trx);
      return response;
    });
    await expect(call).rejects.toBeInstanceOf(UnstorableResponseError);
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('reports a COMMIT sent by fn, and the key still never executes twice', async () => {
    const key = uniqueKey();
    let firstBody: unknown;
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      firstBody = response.body;
      await sql`commit`.execute(trx);
      return response;
    });
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    // fn's COMMIT made its payment durable; the response was recorded after it, on its own, so
    // a retry replays it rather than paying again.
    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(true);
    expect((retry.response as { body: unknown }).body).toEqual(firstBody);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('replays to a duplicate that arrives after a COMMIT sent by fn, before fn returns', async () => {
    // fn's COMMIT made its payment durable and ended the claiming transaction: the key must
    // stay taken from that moment, not only once the record has written the entry on its own.
    const key = uniqueKey();
    let duplicate: unknown;
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      await sql`commit`.execute(trx);
      duplicate = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
      return response;
    });
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    expect(duplicate).toMatchObject({ replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('replays on retry after fn sent COMMIT and then BEGIN', async () => {
    // The record then runs inside the transaction fn opened, which rolls back: whatever it writes
    // there is lost, while the payment fn committed first stays.
    const key = uniqueKey();
    const call = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      const response = await createPayment('s', key)(trx);
      await sql`commit`.execute(trx);
      await sql`begin`.execute(trx);
      return response;
    });
    await expect(call).rejects.toMatchObject({ reason: 'transaction_ended' });
    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
  });
});
