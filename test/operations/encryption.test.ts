/**
 * Operations with `encryption`: the request, each step's result and the final response are
 * stored encrypted, a resumed attempt (a client's retry, the completer) reads them back, and what
 * cannot be decrypted is a typed error that runs nothing again.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import {
  InvalidIdempotencyOptionsError,
  ResponseDecryptionError,
  responseEncryption,
} from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  OperationPendingError,
  resumeAbandonedOperations,
  runOperation,
} from '../../src/operations/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m9:encrypted';
const opsKey = { id: 'ops-1', key: randomBytes(32) };
const encryption = responseEncryption({ keys: [opsKey] });
const request = { amount_cents: 1999, card: '4111-1111-1111-1111' };

/** Keys whose charge fails once (a pending call), so that the next attempt resumes. */
const failOnce = new Set<string>();
const orderRuns = new Map<string, number>();

const operation = defineOperation({
  name: 'encrypted-payment',
  async run(op: OperationContext<Database>, req: typeof request) {
    const order = await op.step('order', async (trx) => {
      orderRuns.set(op.key, (orderRuns.get(op.key) ?? 0) + 1);
      const row = await trx
        .insertInto('payments')
        .values({ scope: SCOPE, key: op.key, amount: req.amount_cents })
        .returning('id')
        .executeTakeFirstOrThrow();
      return { orderId: String(row.id), memo: 'order-memo-Secretname' };
    });
    const charge = await op.call('charge', async () => {
      if (failOnce.delete(op.key)) throw new Error('connection reset');
      return { chargeId: 'ch_Secretcharge' };
    });
    return op.finish(async () => ({ status: 201, order, charge, holder: 'Zoë Secretholder' }));
  },
});

const run = (key: string, withKey = true) =>
  runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request,
    ...(withKey ? { encryption } : {}),
  });

async function storedText(key: string): Promise<string> {
  const { rows } = await sql<{ text: string }>`
    select concat_ws(' | ', o.request::text, o.response::text,
                     (select string_agg(s.result::text, ' | ') from idempotency.operation_steps s
                       where s.scope = o.scope and s.key = o.key)) as text
      from idempotency.operations o
     where o.scope = ${SCOPE} and o.key = ${key}`.execute(fx.db);
  return rows[0]?.text ?? '';
}

async function stepResult(key: string, step: string): Promise<string | null> {
  const { rows } = await sql<{ result: string | null }>`
    select result::text as result from idempotency.operation_steps
     where scope = ${SCOPE} and key = ${key} and step = ${step}`.execute(fx.db);
  return rows[0]?.result ?? null;
}

const SECRETS = ['4111', 'Secretname', 'Secretcharge', 'Secretholder'];

it('stores request, step results and response encrypted; resumes and replays byte for byte', async () => {
  const key = uniqueKey();
  failOnce.add(key);
  await expect(run(key)).rejects.toBeInstanceOf(OperationPendingError);
  const pending = await storedText(key);
  expect(pending).toContain('"kid":"ops-1"');
  for (const secret of SECRETS) expect(pending).not.toContain(secret);

  const resumed = await run(key);
  expect(resumed).toMatchObject({ replayed: false, resumed: true });
  expect(resumed.response.order.memo).toBe('order-memo-Secretname');
  expect(orderRuns.get(key)).toBe(1);

  const finished = await storedText(key);
  for (const secret of SECRETS) expect(finished).not.toContain(secret);

  const replay = await run(key);
  expect(replay.replayed).toBe(true);
  expect(JSON.stringify(replay.response)).toBe(JSON.stringify(resumed.response));
  expect(await fx.countPayments(key, SCOPE)).toBe(1);
});

it('resumes an operation whose stored values lost their leading space (a jsonb round trip)', async () => {
  const key = uniqueKey();
  failOnce.add(key);
  await expect(run(key)).rejects.toBeInstanceOf(OperationPendingError);
  await sql`update idempotency.operations set request = request::jsonb::json
             where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  await sql`update idempotency.operation_steps set result = result::jsonb::json
             where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  expect(await stepResult(key, 'order')).toMatch(/^\{/);

  const resumed = await run(key);
  expect(resumed).toMatchObject({ resumed: true, response: { status: 201 } });
  expect(resumed.response.order.memo).toBe('order-memo-Secretname');
  await sql`update idempotency.operations set response = response::jsonb::json
             where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
  const replay = await run(key);
  expect(JSON.stringify(replay.response)).toBe(JSON.stringify(resumed.response));
  expect(orderRuns.get(key)).toBe(1);
  expect(await fx.countPayments(key, SCOPE)).toBe(1);
});

it('the completer reads the encrypted request with the key, and reports it without', async () => {
  const key = uniqueKey();
  failOnce.add(key);
  await expect(run(key)).rejects.toBeInstanceOf(OperationPendingError);

  const errors: unknown[] = [];
  const without = await resumeAbandonedOperations(fx.db, {
    operations: [operation],
    batchSize: 10_000,
    onError: (error) => errors.push(error),
  });
  expect(without.finished).toBe(0);
  expect(errors.some((error) => error instanceof ResponseDecryptionError)).toBe(true);
  expect(errors.every((error) => !String(error).includes(key))).toBe(true);
  expect(orderRuns.get(key)).toBe(1);

  const pass = await resumeAbandonedOperations(fx.db, {
    operations: [operation],
    batchSize: 10_000,
    encryption,
  });
  expect(pass.finished).toBeGreaterThanOrEqual(1);
  const replay = await run(key);
  expect(replay).toMatchObject({ replayed: true, response: { status: 201 } });
  expect(orderRuns.get(key)).toBe(1);
  expect(await fx.countPayments(key, SCOPE)).toBe(1);
});

it('refuses to replay a finished operation without the key, running nothing', async () => {
  const key = uniqueKey();
  await run(key);
  const refused = run(key, false);
  await expect(refused).rejects.toBeInstanceOf(ResponseDecryptionError);
  await expect(refused).rejects.toMatchObject({
    reason: 'no_key',
    stored: 'operation_response',
    status: 500,
  });
  expect(orderRuns.get(key)).toBe(1);
  expect(await fx.countPayments(key, SCOPE)).toBe(1);
});

/** Two steps whose results are sealed alike (same kind, same operation): only the step's name tells them apart. */
const twoSteps = defineOperation({
  name: 'encrypted-two-steps',
  async run(op: OperationContext<Database>) {
    const a = await op.step('a', async () => ({ value: 'result-a' }));
    const b = await op.step('b', async () => {
      orderRuns.set(op.key, (orderRuns.get(op.key) ?? 0) + 1);
      return { value: 'result-b' };
    });
    await op.call('notify', async () => {
      if (failOnce.delete(op.key)) throw new Error('connection reset');
    });
    return op.finish(async () => ({ a, b }));
  },
});

it('refuses a step result copied onto another step, and does not run the step again', async () => {
  const key = uniqueKey();
  const runTwoSteps = () =>
    runOperation(fx.db, twoSteps, { scope: SCOPE, key, request, encryption });
  failOnce.add(key);
  await expect(runTwoSteps()).rejects.toBeInstanceOf(OperationPendingError);
  // Step a's sealed result, a valid ciphertext of this operation's steps, copied onto step b.
  await sql`update idempotency.operation_steps set result = ${await stepResult(key, 'a')}::json
             where scope = ${SCOPE} and key = ${key} and step = 'b'`.execute(fx.db);
  const copied = await stepResult(key, 'b');
  expect(copied).toBe(await stepResult(key, 'a'));

  const refused = runTwoSteps();
  await expect(refused).rejects.toMatchObject({
    reason: 'authentication_failed',
    stored: 'operation_step',
  });
  expect(orderRuns.get(key)).toBe(1);
  expect(await stepResult(key, 'b')).toBe(copied);
});

it('resumes and replays operations stored in clear before encryption was turned on', async () => {
  const key = uniqueKey();
  failOnce.add(key);
  await expect(run(key, false)).rejects.toBeInstanceOf(OperationPendingError);
  expect(await storedText(key)).toContain('Secretname');
  const resumed = await run(key);
  expect(resumed).toMatchObject({ resumed: true, response: { status: 201 } });
  const replay = await run(key);
  expect(JSON.stringify(replay.response)).toBe(JSON.stringify(resumed.response));
  expect(orderRuns.get(key)).toBe(1);
  expect(await fx.countPayments(key, SCOPE)).toBe(1);
});

it('refuses an encryption option not built by responseEncryption(), before writing anything', async () => {
  const key = uniqueKey();
  const fake = { seal() {}, open() {} } as never;
  const refused = runOperation(fx.db, operation, { scope: SCOPE, key, request, encryption: fake });
  await expect(refused).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
  await expect(refused).rejects.toThrow('encryption: must be built by responseEncryption()');
  const resume = resumeAbandonedOperations(fx.db, { operations: [operation], encryption: fake });
  await expect(resume).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
  expect(await storedText(key)).toBe('');
  expect(orderRuns.get(key)).toBeUndefined();
});

it("with write: 'plaintext', resumes an operation stored encrypted and stores the rest in clear", async () => {
  const key = uniqueKey();
  failOnce.add(key);
  await expect(run(key)).rejects.toBeInstanceOf(OperationPendingError);
  const readOnly = responseEncryption({
    keys: [opsKey],
    write: 'plaintext',
  });
  const resumed = await runOperation(fx.db, operation, {
    scope: SCOPE,
    key,
    request,
    encryption: readOnly,
  });
  expect(resumed).toMatchObject({ resumed: true, response: { status: 201 } });
  // The step recorded before stays encrypted; what the resumed attempt stored is in clear.
  expect(await stepResult(key, 'order')).toMatch(/^ \{"alg":"A256GCM"/);
  expect(await stepResult(key, 'charge')).toBe('{"chargeId":"ch_Secretcharge"}');
  expect(await storedText(key)).toContain('Secretholder');
  const replay = await run(key, false);
  expect(JSON.stringify(replay.response)).toBe(JSON.stringify(resumed.response));
  expect(orderRuns.get(key)).toBe(1);
});
