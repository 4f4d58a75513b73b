// A ledger as an operator finds it: live and expired entries in several scopes (one whose name
// holds LIKE's wildcards), and operations in every state: one an attempt holds with a live lease,
// one abandoned after its first step, one finished. Seeded afresh before each test.

import { sql } from 'kysely';
import { beforeEach, expect } from 'vitest';
import { withIdempotency } from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  OperationPendingError,
  runOperation,
} from '../../src/operations/index.ts';
import {
  createPayment,
  type Database,
  type LedgerFixture,
  useLedgerFixture,
} from './ledger-fixture.ts';

export const SHOP1 = 'shop:1:pay';
export const SHOP2 = 'shop:2:pay';
/** `_` and `%` are LIKE wildcards: a prefix "shop_" must not match "shop:1:pay". */
export const WILD = 'shop_%:pay';
export const OPS = 'shop:1:op';
export const OP_NAME = 'admin-payment';

/** The live entries, as (scope, key); their request is `{ n: i }`, their response 201. */
export const LIVE: readonly (readonly [string, string])[] = [
  [SHOP1, 'k-1'],
  [SHOP1, 'k-2'],
  [SHOP1, 'k 3'],
  [SHOP2, 'k-1'],
  [WILD, 'k-1'],
];
/** The expired entry, in SHOP1. */
export const EXPIRED_KEY = 'k-old';
/** Operations in OPS: held (live lease), abandoned (its charge failed), finished. */
export const HELD = 'op-held';
export const ABANDONED = 'op-abandoned';
export const FINISHED = 'op-finished';

const payment = defineOperation({
  name: OP_NAME,
  async run(op: OperationContext<Database>, request: { fail: boolean }) {
    await op.step('create-order', async (trx) => {
      await createPayment(op.scope, op.key)(trx);
      return { order: 'o-1' };
    });
    await op.call('charge', async () => {
      if (request.fail) throw new Error('provider unreachable');
      return { charge: 'ch_1' };
    });
    return op.finish(async () => ({ status: 201 }));
  },
});

/** The fixture of a test file of the admin functions or commands: the seeded ledger and helpers. */
export function useAdminFixture() {
  const fx = useLedgerFixture();
  beforeEach(async () => {
    await sql`truncate idempotency.ledger, idempotency.operation_steps, idempotency.operations,
                       payments`.execute(fx.db);
    await seed(fx);
  });
  return {
    fx,
    env: () => ({ DATABASE_URL: fx.url }),
    /** Rows of each table, to prove what a command left alone. */
    async counts() {
      const { rows } = await sql<{ ledger: number; operations: number; steps: number }>`
        select (select count(*)::int from idempotency.ledger) as ledger,
               (select count(*)::int from idempotency.operations) as operations,
               (select count(*)::int from idempotency.operation_steps) as steps`.execute(fx.db);
      return rows[0];
    },
    async operationRow(key: string) {
      const { rows } = await sql<{
        state: string;
        fencing_token: string;
        lease_expires_at: Date | null;
        expired: boolean;
      }>`
        select state, fencing_token::text, lease_expires_at,
               coalesce(expires_at <= clock_timestamp(), false) as expired
          from idempotency.operations where scope = ${OPS} and key = ${key}`.execute(fx.db);
      return rows[0];
    },
  };
}

async function seed(fx: LedgerFixture): Promise<void> {
  for (const [index, [scope, key]] of LIVE.entries()) {
    await withIdempotency(fx.db, { scope, key, request: { n: index } }, createPayment(scope, key));
  }
  await withIdempotency(fx.db, { scope: SHOP1, key: EXPIRED_KEY }, createPayment(SHOP1, 'old'));
  await sql`update idempotency.ledger set expires_at = clock_timestamp() - interval '1 hour'
             where scope = ${SHOP1} and key = ${EXPIRED_KEY}`.execute(fx.db);

  await runOperation(fx.db, payment, { scope: OPS, key: FINISHED, request: { fail: false } });
  await expect(
    runOperation(fx.db, payment, { scope: OPS, key: ABANDONED, request: { fail: true } }),
  ).rejects.toBeInstanceOf(OperationPendingError);
  // An attempt that is still running, as another process would hold it: a 10-minute lease.
  const { rows } = await sql<{ outcome: string }>`
    select outcome from idempotency.acquire_operation(
      ${OPS}, ${HELD}, ${OP_NAME}, null, null, 600000, 1000, 86400000)`.execute(fx.db);
  expect(rows[0]?.outcome).toBe('acquired');
}
