/**
 * Taking an operation: a finished one past its expiry is new again (its old steps forgotten), a
 * key reused with another request is refused while the operation is still in progress, and
 * acquiring while cleanup deletes expired operations neither fails nor resurrects old steps.
 */
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { cleanupExpired, IdempotencyKeyReusedError } from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m9:acquire';
const ran = new Map<string, string[]>();
let hold: { key: string; inside: () => void; release: Promise<void> } | undefined;

const operation = defineOperation({
  name: 'acquire',
  async run(op: OperationContext<Database>, request: { amount: number }) {
    const log = ran.get(op.key) ?? [];
    ran.set(op.key, log);
    const order = await op.step('order', async (trx) => {
      log.push(`order ${request.amount}`);
      await trx
        .insertInto('payments')
        .values({ scope: SCOPE, key: op.key, amount: request.amount })
        .execute();
      if (hold?.key === op.key) {
        hold.inside();
        await hold.release;
      }
      return { amount: request.amount };
    });
    return op.finish(async () => ({ amount: order.amount, token: op.fencingToken }));
  },
});
const run = (key: string, amount: number) =>
  runOperation(fx.db, operation, { scope: SCOPE, key, request: { amount }, ttlMs: 60_000 });
const expire = (keys: string[]) =>
  sql`update idempotency.operations set expires_at = clock_timestamp() - interval '1 s'
       where scope = ${SCOPE} and key = any(${keys}::text[])`.execute(fx.db);

it('runs a key again after its finished operation expired, with another request, from the start', async () => {
  const key = uniqueKey();
  expect(await run(key, 1)).toMatchObject({ response: { amount: 1, token: '1' }, replayed: false });
  await expect(run(key, 2)).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  await expire([key]);
  // Not cleaned up yet: the row is taken over, its recorded step is not replayed.
  expect(await run(key, 2)).toEqual({
    response: { amount: 2, token: '2' },
    replayed: false,
    resumed: false,
  });
  expect(ran.get(key)).toEqual(['order 1', 'order 2']);
  expect(await run(key, 2)).toMatchObject({ replayed: true, response: { amount: 2 } });
});

it('refuses the key with another request while the operation is in progress (422)', async () => {
  const key = uniqueKey();
  const inside = deferred();
  const release = deferred();
  hold = { key, inside: inside.resolve, release: release.promise };
  try {
    const first = run(key, 1);
    await inside.promise;
    await expect(run(key, 2)).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    release.resolve();
    expect(await first).toMatchObject({ replayed: false, response: { amount: 1 } });
  } finally {
    hold = undefined;
  }
  expect(await fx.countPayments(key)).toBe(1);
});

it('acquires expired operations while cleanup deletes them: each runs once more, from the start', async () => {
  const keys = Array.from({ length: 20 }, () => uniqueKey('expiring'));
  for (const key of keys) await run(key, 1);
  await expire(keys);
  const [cleaned, ...runs] = await Promise.all([
    cleanupExpired(fx.db, { batchSize: 1 }),
    ...keys.map((key) => run(key, 3)),
  ]);
  expect(cleaned.deleted).toBeLessThanOrEqual(keys.length);
  for (const [index, key] of keys.entries()) {
    expect(runs[index]).toMatchObject({ replayed: false, resumed: false, response: { amount: 3 } });
    expect(ran.get(key)).toEqual(['order 1', 'order 3']);
    expect(await fx.countPayments(key)).toBe(2);
  }
  const { rows } = await sql<{ count: number }>`
    select count(*)::int as count from idempotency.operation_steps
     where scope = ${SCOPE} and key = any(${keys}::text[])`.execute(fx.db);
  expect(rows[0]?.count).toBe(keys.length);
});

it("refuses a key another operation of the scope holds (422), without running the other's code", async () => {
  const key = uniqueKey();
  let refundRan = false;
  const refund = defineOperation({
    name: 'refund',
    async run(op: OperationContext<Database>) {
      refundRan = true;
      return op.finish(async () => ({ refunded: true }));
    },
  });
  const { response } = await run(key, 5);
  // Same scope, same key, same request: a different operation must not replay, nor resume, it.
  await expect(
    runOperation(fx.db, refund, { scope: SCOPE, key, request: { amount: 5 } }),
  ).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
  expect(refundRan).toBe(false);
  expect(await run(key, 5)).toMatchObject({ response, replayed: true });
});
