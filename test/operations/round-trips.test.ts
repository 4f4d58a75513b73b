/**
 * The statements each path of an operation sends, exactly: one statement is one round trip with
 * pg, so a path that gains one is slower on every call. `npm run bench -- --only operations`
 * prices them in time; here they are counted, which is deterministic.
 */
import type { Transaction } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  defineOperation,
  type OperationContext,
  runOperation,
} from '../../src/operations/index.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from '../support/ledger-fixture.ts';
import { useStatementRecorder } from '../support/statement-recorder.ts';

const fx = useLedgerFixture();
const recorder = useStatementRecorder<Database>(fx, 4);
const { record } = recorder;
const SCOPE = 'merchant:m9:create-payment';

const pay = (op: { scope: string; key: string }) => (trx: Transaction<Database>) =>
  createPayment(op.scope, op.key)(trx);

const finishOnly = defineOperation({
  name: 'finish-only',
  run: (op: OperationContext<Database>, _request: null) => op.finish(pay(op)),
});
const stepThenFinish = defineOperation({
  name: 'step-then-finish',
  async run(op: OperationContext<Database>, _request: null) {
    const payment = await op.step('pay', pay(op));
    return op.finish(async () => payment);
  },
});
const stepCallFinish = defineOperation({
  name: 'step-call-finish',
  async run(op: OperationContext<Database>, _request: null) {
    const payment = await op.step('pay', pay(op));
    const charge = await op.call('charge', async ({ downstreamKey }) => ({ id: downstreamKey }));
    return op.finish(async () => ({ ...payment, charge: charge.id }));
  },
});

const run = (operation: typeof finishOnly, key: string) =>
  runOperation(recorder.db, operation, { scope: SCOPE, key, request: null });

const ACQUIRE = 'select * from "idempotency"."acquire_operation"(';
const INSERT_PAYMENT = 'insert into "payments" ("scope",';
const RECORD_STEP = 'with fence as (';
const FINISH = 'update "idempotency"."operations" set state';
const RELEASE = 'update "idempotency"."operations" set lease_expires_at';

describe('round trips of an operation', () => {
  it('with finish() alone: acquire, then the final transaction (5 with one business insert)', async () => {
    const key = uniqueKey();
    const sent = await record(() => run(finishOnly, key));
    expect(sent).toEqual([ACQUIRE, 'begin', INSERT_PAYMENT, FINISH, 'commit']);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('a local step is BEGIN + its statements + the record + COMMIT', async () => {
    const key = uniqueKey();
    const sent = await record(() => run(stepThenFinish, key));
    expect(sent).toEqual([
      ACQUIRE,
      'begin', // the step
      INSERT_PAYMENT,
      RECORD_STEP,
      'commit',
      'begin', // finish(), with no business statement of its own
      FINISH,
      'commit',
    ]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('an external call adds one statement: its record, outside any transaction', async () => {
    const key = uniqueKey();
    const sent = await record(() => run(stepCallFinish, key));
    expect(sent).toEqual([
      ACQUIRE,
      'begin',
      INSERT_PAYMENT,
      RECORD_STEP,
      'commit',
      RECORD_STEP, // the call's result
      'begin',
      FINISH,
      'commit',
    ]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('a replay of a finished operation is one statement', async () => {
    const key = uniqueKey();
    const first = await run(stepCallFinish, key);
    const sent = await record(async () => {
      const replay = await run(stepCallFinish, key);
      expect(replay).toEqual({ response: first.response, replayed: true, resumed: false });
    });
    expect(sent).toEqual([ACQUIRE]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('a call that fails releases the lease once, with one statement', async () => {
    const key = uniqueKey();
    const down = defineOperation({
      name: 'call-fails',
      async run(op: OperationContext<Database>, _request: null) {
        await op.call('notify', async () => {
          throw new Error('the downstream service is down');
        });
        return op.finish(pay(op));
      },
    });
    const sent = await record(() => run(down, key).catch((error: unknown) => error));
    expect(sent).toEqual([ACQUIRE, RELEASE]);
  });

  it('a resumed attempt reads the recorded steps once and skips them', async () => {
    const key = uniqueKey();
    const failing = defineOperation({
      name: 'step-call-finish',
      async run(op: OperationContext<Database>, _request: null) {
        await op.step('pay', pay(op));
        throw new Error('the process stops here');
      },
    });
    const failed = await record(() => run(failing, key).catch((error: unknown) => error));
    expect(failed).toEqual([
      ACQUIRE,
      'begin',
      INSERT_PAYMENT,
      RECORD_STEP,
      'commit',
      RELEASE, // the lease, given up so that a retry need not wait for it
    ]);
    const sent = await record(async () => {
      expect((await run(stepCallFinish, key)).resumed).toBe(true);
    });
    expect(sent).toEqual([
      ACQUIRE,
      'select step, result::text as', // the recorded steps: 'pay' is skipped
      RECORD_STEP, // the call
      'begin',
      FINISH,
      'commit',
    ]);
    expect(await fx.countPayments(key)).toBe(1);
  });
});
