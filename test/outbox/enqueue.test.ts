// enqueueMessage: a message exists if and only if the transaction that wrote it committed, with
// the exact JSON text it was given; bad input is refused before anything is written.
import { inspect } from 'node:util';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  fingerprintRequest,
  InvalidIdempotencyOptionsError,
  NotJsonError,
  withIdempotency,
} from '../../src/index.ts';
import {
  DuplicateOutboxMessageError,
  enqueueMessage,
  enqueueMessages,
} from '../../src/outbox/index.ts';
import { waitForLockWaiters } from '../support/barrier.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();

async function outboxRows(stream: string) {
  const { rows } = await sql<{
    message_id: string;
    position: string;
    topic: string;
    payload: string;
    headers: Record<string, string>;
  }>`
    select message_id, position, topic, payload::text as payload, headers
      from idempotency.outbox where stream = ${stream} order by position`.execute(fx.db);
  return rows;
}

describe('enqueueMessage', () => {
  it('commits the message with the business write of a withIdempotency call', async () => {
    const key = uniqueKey('order');
    const stream = uniqueKey('stream');
    const { response } = await withIdempotency(fx.db, { scope: 'orders', key }, async (trx) => {
      const payment = await createPayment('orders', key)(trx);
      return enqueueMessage(trx, { stream, topic: 'payments', payload: payment.body });
    });
    expect(await fx.countPayments(key)).toBe(1);
    const rows = await outboxRows(stream);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ message_id: response.messageId, position: '1' });
  });

  it('leaves neither the business row nor the message when the transaction rolls back', async () => {
    const key = uniqueKey('order');
    const stream = uniqueKey('stream');
    const failure = new Error('the business rule failed after the enqueue');
    await expect(
      fx.db.transaction().execute(async (trx) => {
        await createPayment('orders', key)(trx);
        await enqueueMessage(trx, { stream, topic: 'payments', payload: { key } });
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await fx.countPayments(key)).toBe(0);
    expect(await outboxRows(stream)).toEqual([]);
    // The position the rolled-back message took is given again: no gap.
    const next = await fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic: 't', payload: 1 }));
    expect(next.position).toBe(1);
  });

  it('stores the exact JSON text, the headers, and a given message id; positions count up', async () => {
    const stream = uniqueKey('stream');
    const payload = { z: 1, a: [true, null, 'é', 1.5e-7], nested: { b: 2, a: 1 } };
    const enqueued = await fx.db.transaction().execute((trx) =>
      enqueueMessages(trx, [
        { stream, topic: 'a', payload, headers: { 'x-tenant': 't1' }, messageId: uniqueKey('id') },
        { stream, topic: 'b', payload: 'text' },
      ]),
    );
    expect(enqueued.map((message) => message.position)).toEqual([1, 2]);
    const rows = await outboxRows(stream);
    expect(rows.map((row) => row.payload)).toEqual([JSON.stringify(payload), '"text"']);
    expect(rows[0]?.headers).toEqual({ 'x-tenant': 't1' });
    expect(rows[0]?.message_id).toBe(enqueued[0]?.messageId);
    expect(rows[1]?.message_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('orders producers of one stream at REPEATABLE READ too: the one that waited is retried by withIdempotency', async () => {
    const stream = uniqueKey('stream');
    let inside: () => void = () => undefined;
    const firstInside = new Promise<void>((resolve) => {
      inside = resolve;
    });
    let commit: () => void = () => undefined;
    const committing = new Promise<void>((resolve) => {
      commit = resolve;
    });
    const options = { scope: 'rr', isolationLevel: 'repeatable read' } as const;
    const first = withIdempotency(fx.db, { ...options, key: uniqueKey('a') }, async (trx) => {
      const message = await enqueueMessage(trx, { stream, topic: 't', payload: 'a' });
      inside();
      await committing;
      return message.position;
    });
    await firstInside;
    let runs = 0;
    const second = withIdempotency(fx.db, { ...options, key: uniqueKey('b') }, async (trx) => {
      runs += 1;
      return (await enqueueMessage(trx, { stream, topic: 't', payload: 'b' })).position;
    });
    await waitForLockWaiters(fx.db, 1);
    commit();
    expect((await first).response).toBe(1);
    expect((await second).response).toBe(2);
    // Its first run waited for the counter, then met a serialization failure.
    expect(runs).toBe(2);
    expect((await outboxRows(stream)).map((row) => JSON.parse(row.payload))).toEqual(['a', 'b']);
  });

  it('refuses a Kysely instance that is not a transaction, writing nothing', async () => {
    const stream = uniqueKey('stream');
    const call = enqueueMessage(fx.db, { stream, topic: 't', payload: {} });
    await expect(call).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    await expect(call).rejects.toMatchObject({ issues: ['trx: must be a Kysely transaction'] });
    expect(await outboxRows(stream)).toEqual([]);
  });

  it.each([
    ['an empty stream', { stream: '', topic: 't', payload: 1 }, 'stream'],
    ['a missing topic', { stream: 's', payload: 1 }, 'topic'],
    [
      'a header that is not a string',
      { stream: 's', topic: 't', payload: 1, headers: { a: 1 } },
      'headers.a',
    ],
    ['an empty message id', { stream: 's', topic: 't', payload: 1, messageId: '' }, 'messageId'],
    ['an unknown property', { stream: 's', topic: 't', payload: 1, extra: true }, '(input)'],
  ])(
    'refuses %s with an InvalidIdempotencyOptionsError, writing nothing',
    async (_, message, path) => {
      const stream = uniqueKey('stream');
      const error = await fx.db
        .transaction()
        .execute(async (trx) => {
          // The first message is fine: a batch is checked whole before anything is written.
          await enqueueMessages(trx, [{ stream, topic: 't', payload: 1 }, message as never]);
        })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
      expect((error as InvalidIdempotencyOptionsError).issues.join()).toContain(`${path}:`);
      expect(await outboxRows(stream)).toEqual([]);
    },
  );

  it.each([
    ['a stream of 1000 CJK characters (3000 bytes)', { stream: '流'.repeat(1000) }, 'stream'],
    ['a stream with a lone surrogate', { stream: 'a\ud800' }, 'stream'],
    ['a topic of 255 characters but 256 bytes', { topic: `${'a'.repeat(254)}é` }, 'topic'],
    ['a message id of 200 euro signs (600 bytes)', { messageId: '€'.repeat(200) }, 'messageId'],
    ['a message id with a lone surrogate', { messageId: 'id\udc00' }, 'messageId'],
    ['a header value with a lone surrogate', { headers: { a: 'x\ud800' } }, 'headers.a'],
    ['a header name of 256 bytes', { headers: { ['h'.repeat(256)]: 'v' } }, 'headers'],
  ])('refuses %s before any SQL, leaving the transaction usable', async (_, bad, path) => {
    const key = uniqueKey('order');
    const stream = uniqueKey('stream');
    const error = await fx.db.transaction().execute(async (trx) => {
      await createPayment('orders', key)(trx);
      const caught = await enqueueMessage(trx, { stream, topic: 't', payload: 1, ...bad }).catch(
        (thrown: unknown) => thrown,
      );
      // Nothing reached Postgres: the transaction goes on and commits.
      await enqueueMessage(trx, { stream, topic: 't', payload: 'ok' });
      return caught;
    });
    expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(
      (error as InvalidIdempotencyOptionsError).issues.some((issue) => issue.startsWith(path)),
    ).toBe(true);
    expect(await fx.countPayments(key)).toBe(1);
    expect((await outboxRows(stream)).map((row) => row.payload)).toEqual(['"ok"']);
  });

  it.each([
    ['undefined', undefined, '$'],
    ['a BigInt', { amount: 10n }, '$.amount'],
    ['NaN', [1, Number.NaN], '$[1]'],
    ['a Map', { m: new Map([[1, 2]]) }, '$.m'],
    ['a function', { f: () => 1 }, '$.f'],
    [
      'a hole in a sparse array',
      { list: Object.assign(new Array(3), { 0: 1, 2: 3 }) },
      '$.list[1]',
    ],
    ['an invalid Date', { at: new Date(Number.NaN) }, '$.at'],
    ['an undefined property', { a: 1, b: undefined }, '$.b'],
  ])('refuses a payload holding %s with a NotJsonError naming where', async (_, payload, path) => {
    const stream = uniqueKey('stream');
    const error = await fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic: 't', payload }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NotJsonError);
    expect((error as NotJsonError).path).toBe(path);
    expect(await outboxRows(stream)).toEqual([]);
  });

  it('words the problems the core refuses too as the core does', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const payloads = [{ a: 10n }, [1, Number.NaN], { m: new Map() }, { f: () => 1 }, cyclic];
    const messages = await fx.db.transaction().execute(async (trx) => {
      const refused: string[] = [];
      for (const payload of payloads) {
        const error = await enqueueMessage(trx, { stream: 's', topic: 't', payload }).catch(
          (thrown: Error) => thrown,
        );
        refused.push((error as Error).message);
      }
      return refused;
    });
    const core = payloads.map((payload) => {
      try {
        fingerprintRequest(payload);
        return 'accepted';
      } catch (error) {
        return (error as Error).message;
      }
    });
    expect(messages).toEqual(core);
  });

  it('refuses a cyclic payload', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const call = fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream: 's', topic: 't', payload: cyclic }));
    await expect(call).rejects.toBeInstanceOf(NotJsonError);
  });

  it('refuses a message id already in the outbox with a typed error that does not print the id, not even in its cause', async () => {
    const messageId = uniqueKey('secret-id');
    const stream = uniqueKey('stream');
    await fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic: 't', payload: 1, messageId }));
    const error = await fx.db
      .transaction()
      .execute(async (trx) => {
        await createPayment('orders', messageId)(trx);
        await enqueueMessage(trx, { stream, topic: 't', payload: 2, messageId });
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DuplicateOutboxMessageError);
    expect((error as DuplicateOutboxMessageError).key).toBe(messageId);
    for (const printed of [
      String(error),
      inspect(error, { depth: 10 }),
      JSON.stringify(error),
      JSON.stringify({ ...(error as object) }),
      (error as Error).stack ?? '',
    ]) {
      expect(printed).not.toContain(messageId);
    }
    // What a caller matches on stays: the SQLSTATE and the constraint.
    expect((error as Error).cause).toEqual({ code: '23505', constraint: 'outbox_message_id_key' });
    expect(await fx.countPayments(messageId)).toBe(0);
    expect(await outboxRows(stream)).toHaveLength(1);
  });

  it('refuses a payload longer than maxPayloadBytes before any SQL, and accepts one that fits', async () => {
    const stream = uniqueKey('stream');
    const limit = { maxPayloadBytes: 1024 * 1024 }; // NATS's default max_payload
    const error = await fx.db.transaction().execute(async (trx) => {
      const caught = await enqueueMessage(
        trx,
        { stream, topic: 't', payload: { text: 'é'.repeat(600_000) } }, // 1.2 MB of UTF-8
        limit,
      ).catch((thrown: unknown) => thrown);
      await enqueueMessage(trx, { stream, topic: 't', payload: 'x'.repeat(1000) }, limit);
      return caught;
    });
    expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect((error as InvalidIdempotencyOptionsError).issues).toEqual([
      'payload: is 1200011 bytes of JSON, more than maxPayloadBytes (1048576)',
    ]);
    expect(await outboxRows(stream)).toHaveLength(1);
  });

  it.each([
    ['empty', ''],
    ['"$user"', '$user'],
    ['a pg_ name', 'pg_x'],
    ['longer than 63 bytes', 'é'.repeat(32)],
  ])('refuses a schema option that is %s, as the core does', async (_, schema) => {
    const call = fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream: 's', topic: 't', payload: 1 }, { schema }));
    await expect(call).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    await expect(call).rejects.toMatchObject({ issues: [expect.stringMatching(/^schema: /)] });
  });
});
