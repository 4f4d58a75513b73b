import { AbortedTransactionError } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  UnstorableResponseError,
  withIdempotency,
} from '../src/index.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

class Rollback extends Error {}

describe("inside the caller's transaction", () => {
  it('removes both the business row and the ledger entry when the caller rolls back', async () => {
    const key = uniqueKey();
    const rolledBack = fx.db.transaction().execute(async (trx) => {
      const result = await withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
      expect(result.replayed).toBe(false);
      throw new Rollback();
    });
    await expect(rolledBack).rejects.toBeInstanceOf(Rollback);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("commits both with the caller's commit, and replays afterwards", async () => {
    const key = uniqueKey();
    const first = await fx.db.transaction().execute(async (trx) => {
      await trx.insertInto('payments').values({ scope: 'audit', key, amount: 0 }).execute();
      return withIdempotency(trx, { scope: 's', key }, createPayment('s', key));
    });
    const replay = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(replay).toEqual({ response: first.response, replayed: true });
    expect(await fx.countPayments(key, 's')).toBe(1);
    expect(await fx.countPayments(key, 'audit')).toBe(1);
  });

  it('replays inside a transaction without running fn', async () => {
    const key = uniqueKey();
    const first = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    let ran = false;
    const replay = await fx.db.transaction().execute((trx) =>
      withIdempotency(trx, { scope: 's', key }, async () => {
        ran = true;
        return createPayment('s', key)(trx);
      }),
    );
    expect(ran).toBe(false);
    expect(replay).toEqual({ response: first.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  const declined = new Error('card declined');
  it.each([
    [
      'fn throws',
      async () => {
        throw declined;
      },
      (error: unknown) => expect(error).toBe(declined),
    ],
    [
      'the response cannot be stored',
      async () => ({ n: 1n }),
      (error: unknown) => expect(error).toBeInstanceOf(UnstorableResponseError),
    ],
  ])('commits nothing when %s and the caller commits anyway', async (_label, fail, check) => {
    const key = uniqueKey();
    let inner: unknown;
    const committed = fx.db.transaction().execute(async (trx) => {
      inner = await withIdempotency(trx, { scope: 's', key }, async () => {
        await createPayment('s', key)(trx);
        return fail();
      }).catch((error: unknown) => error);
      // The caller swallows the error and lets its transaction commit.
    });
    // Postgres turns the COMMIT of an aborted transaction into a ROLLBACK, which Kysely reports.
    await expect(committed).rejects.toBeInstanceOf(AbortedTransactionError);
    check(inner);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('lets a savepoint around the call carry the transaction on after a failure', async () => {
    const key = uniqueKey();
    const trx = await fx.db.startTransaction().execute();
    await trx.insertInto('payments').values({ scope: 'audit', key, amount: 0 }).execute();
    const savepoint = await trx.savepoint('idempotent_call').execute();
    await expect(
      withIdempotency(savepoint, { scope: 's', key }, async () => {
        await createPayment('s', key)(savepoint);
        throw declined;
      }),
    ).rejects.toBe(declined);
    await savepoint.rollbackToSavepoint('idempotent_call').execute();
    await trx.commit().execute();
    expect(await fx.countPayments(key, 'audit')).toBe(1);
    expect(await fx.countPayments(key, 's')).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('keeps the committed entry when a reused key is refused inside a transaction that commits', async () => {
    const key = uniqueKey();
    const first = await withIdempotency(
      fx.db,
      { scope: 's', key, request: { amount: 1 } },
      createPayment('s', key),
    );
    await fx.db.transaction().execute(async (trx) => {
      await expect(
        withIdempotency(trx, { scope: 's', key, request: { amount: 2 } }, createPayment('s', key)),
      ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    });
    const replay = await withIdempotency(
      fx.db,
      { scope: 's', key, request: { amount: 1 } },
      createPayment('s', key),
    );
    expect(replay).toEqual({ response: first.response, replayed: true });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('refuses isolationLevel and maxAttempts, which belong to the caller here', async () => {
    await fx.db.transaction().execute(async (trx) => {
      await expect(
        withIdempotency(
          trx,
          { scope: 's', key: 'k', isolationLevel: 'serializable' },
          async () => 1,
        ),
      ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
      await expect(
        withIdempotency(trx, { scope: 's', key: 'k', maxAttempts: 3 }, async () => 1),
      ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    });
  });
});
