/**
 * An operation for the lease tests: a step that writes a payment and then calls `inside` (which
 * may hold the attempt in its transaction), and a final transaction that returns the holder's
 * fencing token.
 */
import { defineOperation, type OperationContext } from '../../src/operations/index.ts';
import type { Database } from '../support/ledger-fixture.ts';

export function pausableOperation(inside: (token: string) => Promise<void>) {
  return defineOperation({
    name: 'pausable',
    async run(op: OperationContext<Database>) {
      await op.step('pay', async (trx) => {
        await trx
          .insertInto('payments')
          .values({ scope: op.scope, key: op.key, amount: 1 })
          .execute();
        await inside(op.fencingToken);
      });
      return op.finish(async () => ({ token: op.fencingToken }));
    },
  });
}
