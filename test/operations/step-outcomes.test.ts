/**
 * What a step's outcome leaves behind: results that are not objects replay as they were; results
 * that cannot be stored, errors of the code and of the database roll the step back and leave the
 * operation resumable at once; and what `run` does around finish().
 */
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { UnstorableResponseError } from '../../src/index.ts';
import {
  defineOperation,
  FinalResponse,
  type OperationContext,
  OperationPendingError,
  runOperation,
} from '../../src/operations/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m5:steps';

const stepsOf = async (key: string) => {
  const { rows } = await sql<{ step: string }>`
    select step from idempotency.operation_steps where scope = ${SCOPE} and key = ${key}
     order by recorded_at, step`.execute(fx.db);
  return rows.map((row) => row.step);
};
const stateOf = async (key: string) => {
  const { rows } = await sql<{ state: string; held: boolean }>`
    select state, lease_expires_at is not null as held from idempotency.operations
     where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  return rows[0];
};

/** An operation whose step `fail` throws what `failure(attempt)` gives, on the attempts it says. */
function failingOperation(name: string, failure: (trx: unknown, attempt: number) => unknown) {
  let attempt = 0;
  return defineOperation({
    name,
    async run(op: OperationContext<Database>) {
      attempt += 1;
      const paid = await op.step('pay', async (trx) => {
        await trx.insertInto('payments').values({ scope: SCOPE, key: op.key, amount: 1 }).execute();
        return 'paid';
      });
      const value = await op.step('fail', async (trx) => {
        await trx.insertInto('payments').values({ scope: SCOPE, key: op.key, amount: 2 }).execute();
        return failure(trx, attempt);
      });
      return op.finish(async () => ({ paid, value }));
    },
  });
}

it('replays results that are not objects as they were: undefined, null, 0, false, ""', async () => {
  const key = uniqueKey();
  const seen: unknown[][] = [];
  let calls = 0;
  const operation = defineOperation({
    name: 'plain-results',
    async run(op: OperationContext<Database>) {
      const values = [
        await op.step('undefined', async () => undefined),
        await op.step('null', async () => null),
        await op.step('zero', async () => 0),
        await op.step('false', async () => false),
        await op.step('empty', async () => ''),
        await op.call('call-null', async () => null),
      ];
      seen.push(values);
      await op.call('flaky', async () => {
        calls += 1;
        if (calls === 1) throw new Error('connection reset');
        return 'ok';
      });
      return op.finish(async () => values);
    },
  });
  const run = () => runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
  await expect(run()).rejects.toBeInstanceOf(OperationPendingError);
  const resumed = await run();
  expect(resumed.resumed).toBe(true);
  expect(seen).toEqual([
    [undefined, null, 0, false, '', null],
    [undefined, null, 0, false, '', null],
  ]);
  expect(resumed.response).toEqual([null, null, 0, false, '', null]);
});

for (const [label, value] of [
  ['a BigInt', () => 1n],
  [
    'a cycle',
    () => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      return cyclic;
    },
  ],
  ['a function', () => () => 1],
] as const) {
  it(`refuses ${label} as a step result with UnstorableResponseError: the step rolls back, the operation resumes at once`, async () => {
    const key = uniqueKey();
    const operation = failingOperation(`unstorable-${label}`, (_trx, attempt) =>
      attempt === 1 ? value() : 'stored',
    );
    const run = () =>
      runOperation(fx.db, operation, { scope: SCOPE, key, request: null, onConcurrent: 'reject' });
    await expect(run()).rejects.toBeInstanceOf(UnstorableResponseError);
    expect(await stepsOf(key)).toEqual(['pay']);
    expect(await fx.countPayments(key)).toBe(1);
    expect(await stateOf(key)).toEqual({ state: 'in_progress', held: false });
    expect(await run()).toMatchObject({
      resumed: true,
      response: { paid: 'paid', value: 'stored' },
    });
    expect(await fx.countPayments(key)).toBe(2);
  });
}

it("rethrows the code's own error unchanged, after recorded steps, and resumes from them at once", async () => {
  const key = uniqueKey();
  const thrown = new Error('out of stock');
  const operation = failingOperation('plain-error', (_trx, attempt) => {
    if (attempt === 1) throw thrown;
    return 'stored';
  });
  const run = () =>
    runOperation(fx.db, operation, { scope: SCOPE, key, request: null, onConcurrent: 'reject' });
  await expect(run()).rejects.toBe(thrown);
  expect(await stateOf(key)).toEqual({ state: 'in_progress', held: false });
  expect(await run()).toMatchObject({ resumed: true, response: { value: 'stored' } });
  expect(await fx.countPayments(key)).toBe(2);
});

it('rolls back a step whose connection is terminated or whose transaction fails to serialize, and resumes at once', async () => {
  for (const failure of [
    sql`select pg_terminate_backend(pg_backend_pid())`,
    sql`do $$ begin raise exception 'could not serialize' using errcode = '40001'; end $$`,
  ]) {
    const key = uniqueKey();
    const operation = failingOperation('database-failure', async (trx, attempt) => {
      if (attempt === 1) await failure.execute(trx as Parameters<typeof failure.execute>[0]);
      return 'stored';
    });
    const run = () =>
      runOperation(fx.db, operation, { scope: SCOPE, key, request: null, onConcurrent: 'reject' });
    await expect(run()).rejects.toThrow();
    expect(await stepsOf(key)).toEqual(['pay']);
    expect(await fx.countPayments(key)).toBe(1);
    expect(await stateOf(key)).toEqual({ state: 'in_progress', held: false });
    expect(await run()).toMatchObject({ resumed: true, response: { value: 'stored' } });
    expect(await fx.countPayments(key)).toBe(2);
  }
});

it('records what run returns without finish(), and what finish() committed when run throws after it', async () => {
  const returned = uniqueKey();
  const plain = defineOperation({
    name: 'no-finish',
    async run(op: OperationContext<Database>) {
      await op.step('one', async () => 1);
      return { status: 200 };
    },
  });
  const first = await runOperation(fx.db, plain, { scope: SCOPE, key: returned, request: null });
  expect(first).toMatchObject({ response: { status: 200 }, replayed: false });
  expect(await runOperation(fx.db, plain, { scope: SCOPE, key: returned, request: null })).toEqual({
    response: { status: 200 },
    replayed: true,
    resumed: false,
  });

  const after = uniqueKey();
  const thrown = new Error('after finish');
  const throwsAfter = defineOperation({
    name: 'throws-after-finish',
    async run(op: OperationContext<Database>) {
      await op.finish(async () => ({ status: 201 }));
      throw thrown;
    },
  });
  await expect(
    runOperation(fx.db, throwsAfter, { scope: SCOPE, key: after, request: null }),
  ).rejects.toBe(thrown);
  expect(await stateOf(after)).toEqual({ state: 'finished', held: false });
  expect(
    await runOperation(fx.db, throwsAfter, { scope: SCOPE, key: after, request: null }),
  ).toMatchObject({ response: { status: 201 }, replayed: true });
});

it('ends the operation with a FinalResponse a local step throws: its writes roll back, the response replays', async () => {
  const key = uniqueKey();
  let runs = 0;
  const operation = defineOperation({
    name: 'final-from-step',
    async run(op: OperationContext<Database>) {
      runs += 1;
      await op.step('reserve', async (trx) => {
        await trx.insertInto('payments').values({ scope: SCOPE, key: op.key, amount: 1 }).execute();
        throw new FinalResponse({ status: 409, body: { error: 'out_of_stock' } });
      });
      return op.finish(async () => ({ status: 201 }));
    },
  });
  const run = () => runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
  expect(await run()).toEqual({
    response: { status: 409, body: { error: 'out_of_stock' } },
    replayed: false,
    resumed: false,
  });
  expect(await run()).toMatchObject({ replayed: true, response: { status: 409 } });
  expect(runs).toBe(1);
  expect(await fx.countPayments(key)).toBe(0);
  expect(await stateOf(key)).toEqual({ state: 'finished', held: false });
});
