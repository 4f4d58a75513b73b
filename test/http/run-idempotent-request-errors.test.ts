import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { ResponseNotSentError, runIdempotentRequest } from '../../src/http/index.ts';
import {
  IdempotencyKeyReusedError,
  LedgerSchemaError,
  UnstorableResponseError,
  withIdempotency,
} from '../../src/index.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { failFirstCommitFor } from './support/forced-serialization-failure.ts';
import { createPayment, facts, problemOf, runnerFor } from './support/runner.ts';

const fx = useLedgerFixture();
const setup = (extra?: Parameters<typeof runnerFor>[1]) => runnerFor(fx.db, extra);

describe('runIdempotentRequest: errors, problems, concurrency and retries', () => {
  it('rethrows what the handler throws, unchanged, and stores nothing', async () => {
    const { run, reported } = setup();
    const key = uniqueKey();
    const failure = new Error('card declined');
    await expect(
      run(key, async (trx, context) => {
        await createPayment()(trx, context);
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
    expect(reported).toEqual([]);
  });

  it("rethrows a library error the handler's own work raises for another key, unchanged", async () => {
    const { run, reported } = setup();
    const key = uniqueKey();
    const innerKey = uniqueKey('inner');
    await withIdempotency(fx.db, { scope: 'ledger', key: innerKey, request: 'a' }, async () => 1);
    let thrown: unknown;
    const outcome = run(key, async (trx, context) => {
      await createPayment()(trx, context);
      try {
        // A sub-operation of the handler, keyed by the handler, reused with another request.
        await withIdempotency(trx, { scope: 'ledger', key: innerKey, request: 'b' }, async () => 2);
      } catch (error) {
        thrown = error;
        throw error;
      }
      return undefined;
    });
    await expect(outcome).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(outcome).rejects.toBe(thrown);
    expect(reported).toEqual([]);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('refuses a response whose stored form is over maxResponseBytes, committing nothing', async () => {
    const { run, reported } = setup({ maxResponseBytes: 1000 });
    const key = uniqueKey();
    // 900 bytes that are not UTF-8: 1,200 characters of base64 once stored.
    const outcome = await run(key, createPayment({ body: Buffer.alloc(900, 0xff) }));
    expect(outcome.response.status).toBe(500);
    expect(problemOf(outcome).type).toBe('urn:idempotency-ledger:problem:response-not-storable');
    expect(reported[0]).toBeInstanceOf(UnstorableResponseError);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
    const text = await run(key, createPayment({ body: Buffer.alloc(800, 0x61) }));
    expect(text.kind).toBe('executed');
  });

  it("answers an adapter's error about this request's own response with its problem", async () => {
    const { run, reported } = setup();
    const key = uniqueKey();
    const outcome = await run(key, async (trx, context) => {
      await createPayment()(trx, context);
      throw new UnstorableResponseError({ ...context, reason: 'too_large', message: 'too large' });
    });
    expect(outcome.response.status).toBe(500);
    expect(problemOf(outcome).type).toBe('urn:idempotency-ledger:problem:response-not-storable');
    expect(reported[0]).toBeInstanceOf(UnstorableResponseError);
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('answers a handler that sent no response with a 500 problem, and reports it', async () => {
    const { run, reported } = setup();
    const key = uniqueKey();
    const outcome = await run(key, async (trx, context) => {
      await createPayment()(trx, context);
      return undefined;
    });
    expect(outcome.kind).toBe('refused');
    expect(outcome.response.status).toBe(500);
    expect(problemOf(outcome).type).toBe('urn:idempotency-ledger:problem:internal-error');
    expect(reported).toHaveLength(1);
    expect(reported[0]).toBeInstanceOf(ResponseNotSentError);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  it('answers a ledger that is not migrated with a 500 that says nothing internal', async () => {
    await sql`create schema if not exists http_not_migrated`.execute(fx.db);
    const { run, reported } = setup({ schema: 'http_not_migrated' });
    const key = uniqueKey('sk_live');
    const handler = createPayment();
    const outcome = await run(key, handler);

    expect(outcome.kind).toBe('refused');
    expect(outcome.response.status).toBe(500);
    expect(outcome.response.headers['content-type']).toBe('application/problem+json');
    const body = Buffer.from(outcome.response.body).toString('utf8');
    expect(JSON.parse(body).type).toBe('urn:idempotency-ledger:problem:internal-error');
    for (const internal of [
      key,
      'merchant',
      'http_not_migrated',
      'relation',
      'migrat',
      'schema',
      'select',
    ]) {
      expect(body).not.toContain(internal);
    }
    expect(reported).toHaveLength(1);
    expect(reported[0]).toBeInstanceOf(LedgerSchemaError);
    expect(handler.runs()).toBe(0);
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('refuses the key with another body (422) without executing', async () => {
    const { run, reported } = setup();
    const key = uniqueKey();
    await run(key, createPayment(), { amount: 100 });
    const handler = createPayment();
    const outcome = await run(key, handler, { amount: 200 });
    expect(outcome.kind).toBe('refused');
    expect(outcome.response.status).toBe(422);
    expect(problemOf(outcome).type).toBe('urn:idempotency-ledger:problem:key-reused');
    expect(handler.runs()).toBe(0);
    expect(reported).toEqual([]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("answers 409 with Retry-After while another request holds the key, with 'reject'", async () => {
    const { run, reported } = setup({ onConcurrent: 'reject' });
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const first = run(key, async (trx, context) => {
      const response = await createPayment()(trx, context);
      inside.resolve();
      await release.promise;
      return response;
    });
    await inside.promise;

    const duplicate = createPayment();
    const conflict = await run(key, duplicate);
    release.resolve();

    expect(conflict.kind).toBe('refused');
    expect(conflict.response.status).toBe(409);
    expect(problemOf(conflict).type).toBe('urn:idempotency-ledger:problem:request-in-progress');
    expect(Number(conflict.response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(duplicate.runs()).toBe(0);
    expect((await first).kind).toBe('executed');
    expect((await run(key, duplicate)).kind).toBe('replayed');
    expect(await fx.countPayments(key)).toBe(1);
    expect(reported).toEqual([]);
  });

  it('rethrows what the scope function throws, and stores nothing', async () => {
    const failure = new Error('not authenticated');
    for (const scope of [
      () => {
        throw failure;
      },
      async () => Promise.reject(failure),
    ]) {
      const { run } = setup({ scope });
      const key = uniqueKey();
      const handler = createPayment();
      await expect(run(key, handler)).rejects.toBe(failure);
      expect(handler.runs()).toBe(0);
      expect(await fx.countEntries(key)).toBe(0);
    }
  });

  it('refuses a missing or repeated key (400) before asking for the scope', async () => {
    let scopes = 0;
    const { run } = setup({ scope: () => `s${++scopes}` });
    const missing = await run(undefined, createPayment());
    expect(problemOf(missing).type).toBe('urn:idempotency-ledger:problem:missing-key');
    const repeated = await runIdempotentRequest(
      setup().options,
      { merchant: 'm1' },
      { ...facts(undefined, {}), keyHeader: ['a', 'b'] },
      createPayment(),
    );
    expect(repeated.response.status).toBe(400);
    expect(problemOf(repeated).type).toBe('urn:idempotency-ledger:problem:invalid-key');
    expect(scopes).toBe(0);
  });

  it("retries a serialization failure and answers with the last attempt's response", async () => {
    const { run } = setup({ isolationLevel: 'serializable' });
    const key = uniqueKey();
    const forced = await failFirstCommitFor(fx.db, key);
    try {
      const handler = createPayment();
      const outcome = await run(key, handler);
      expect(await forced.attempts()).toBe(2);
      expect(handler.runs()).toBe(2);
      expect(outcome.kind).toBe('executed');
      expect(outcome.response.headers['x-trace-id']).toBe('trace-2');
      const committed = await fx.db.selectFrom('payments').select('id').where('key', '=', key);
      const rows = await committed.execute();
      expect(rows).toHaveLength(1);
      expect(outcome.response.headers.location).toBe(`/payments/${rows[0]?.id}`);
      const replay = await run(key, handler);
      expect(
        Buffer.compare(Buffer.from(replay.response.body), Buffer.from(outcome.response.body)),
      ).toBe(0);
    } finally {
      await forced.remove();
    }
  });
});
