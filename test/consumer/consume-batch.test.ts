import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  type ConsumeResult,
  consumeBatch,
  consumeOnce,
  type DeadLetter,
  type Delivery,
  MissingMessageIdError,
} from '../../src/consumer/index.ts';
import {
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  MAX_BATCH_ITEMS,
  responseEncryption,
} from '../../src/index.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from '../support/ledger-fixture.ts';
import { useStatementRecorder } from '../support/statement-recorder.ts';

const fx = useLedgerFixture();
const recorder = useStatementRecorder<Database>(fx, 3);

function collector() {
  const deadLetters: DeadLetter<string>[] = [];
  return {
    deadLetters,
    onDeadLetter: (letter: DeadLetter<string>) => void deadLetters.push(letter),
  };
}

/** Deliveries whose message is its own id, as the crash child's are. */
function deliveriesOf(ids: readonly (string | undefined)[], attempt = 1): Delivery<string>[] {
  return ids.map((messageId) => ({ message: messageId ?? 'no id', messageId, attempt }));
}

/** The handler of these tests: one payment per message, keyed by the message (its id). */
function pay(scope: string, ran: string[] = []) {
  return (trx: Parameters<ReturnType<typeof createPayment>>[0], message: string) => {
    ran.push(message);
    return createPayment(scope, message)(trx);
  };
}

function ids(count: number, label = 'msg'): string[] {
  return Array.from({ length: count }, () => uniqueKey(label));
}

async function countEntries(keys: readonly string[]): Promise<number> {
  const { rows } = await sql<{ count: string }>`
    select count(*) as count from idempotency.ledger where key = any(${keys}::text[])`.execute(
    fx.db,
  );
  return Number(rows[0]?.count);
}

describe('consumeBatch', () => {
  it('processes a batch of new messages in one transaction whose claim is one statement', async () => {
    const batch = ids(10);
    const { onDeadLetter } = collector();
    const sent = await recorder.record(async () => {
      const results = await consumeBatch(
        recorder.db,
        { scope: 's', onDeadLetter },
        deliveriesOf(batch),
        pay('s'),
      );
      expect(results.map((result) => result.outcome)).toEqual(batch.map(() => 'processed'));
    });
    // One claim for the whole batch, one record, one transaction: not four statements a message.
    expect(sent).toEqual([
      'begin',
      'with claims as',
      ...batch.map(() => 'insert into "payments"'),
      'with updated as',
      'commit',
    ]);
    for (const key of batch) expect(await fx.countPayments(key, 's')).toBe(1);
  });

  it('replays processed messages byte for byte and runs the handler for the new ones only', async () => {
    const [old1, old2, new1, new2] = ids(4) as [string, string, string, string];
    const { onDeadLetter } = collector();
    const options = { scope: 's', onDeadLetter };
    const first1 = await consumeOnce(
      fx.db,
      options,
      deliveriesOf([old1])[0] as Delivery<string>,
      pay('s'),
    );
    const first2 = await consumeOnce(
      fx.db,
      options,
      deliveriesOf([old2])[0] as Delivery<string>,
      pay('s'),
    );
    const ran: string[] = [];
    const results = await consumeBatch(
      fx.db,
      options,
      deliveriesOf([new1, old1, new2, old2], 2),
      pay('s', ran),
    );
    expect(ran).toEqual([new1, new2]);
    expect(results.map((result) => result.outcome)).toEqual([
      'processed',
      'replayed',
      'processed',
      'replayed',
    ]);
    expect(JSON.stringify(responseOf(results[1]))).toBe(JSON.stringify(responseOf(first1)));
    expect(JSON.stringify(responseOf(results[3]))).toBe(JSON.stringify(responseOf(first2)));
    // A redelivery of the whole batch replays every message, the batch's own results included.
    const again = await consumeBatch(
      fx.db,
      options,
      deliveriesOf([new1, old1, new2, old2], 3),
      pay('s', ran),
    );
    expect(ran).toEqual([new1, new2]);
    expect(JSON.stringify(again.map(responseOf))).toBe(JSON.stringify(results.map(responseOf)));
    for (const key of [old1, old2, new1, new2]) expect(await fx.countPayments(key)).toBe(1);
  });

  it('processes the others once when the handler fails on one, which is retried, then dead-lettered', async () => {
    const [good1, poison, good2] = ids(3) as [string, string, string];
    const { deadLetters, onDeadLetter } = collector();
    const options = { scope: 's', maxAttempts: 2, onDeadLetter };
    const failure = new Error('poison message');
    const handler = async (
      trx: Parameters<ReturnType<typeof createPayment>>[0],
      message: string,
    ) => {
      const response = await pay('s')(trx, message);
      if (message === poison) throw failure;
      return response;
    };
    const first = await consumeBatch(
      fx.db,
      options,
      deliveriesOf([good1, poison, good2], 1),
      handler,
    );
    expect(first.map((result) => result.outcome)).toEqual(['processed', 'retry', 'processed']);
    expect(first[1]).toMatchObject({ error: failure });
    for (const key of [good1, good2]) expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countPayments(poison)).toBe(0);

    // The broker redelivers the batch: the others replay, the poison fails its last attempt.
    const second = await consumeBatch(
      fx.db,
      options,
      deliveriesOf([good1, poison, good2], 2),
      handler,
    );
    expect(second.map((result) => result.outcome)).toEqual([
      'replayed',
      'dead_lettered',
      'replayed',
    ]);
    expect(deadLetters).toMatchObject([
      { message: poison, reason: 'max_attempts', error: failure },
    ]);
    for (const key of [good1, good2]) expect(await fx.countPayments(key)).toBe(1);
    expect(await fx.countPayments(poison)).toBe(0);
  });

  it('dead-letters messages without a valid id or past their attempts, and processes the rest', async () => {
    const [good, late] = ids(2) as [string, string];
    const { deadLetters, onDeadLetter } = collector();
    const deliveries: Delivery<string>[] = [
      { message: good, messageId: good, attempt: 1 },
      { message: 'no id', messageId: undefined, attempt: 1 },
      { message: 'bad id', messageId: 'bad\nid', attempt: 1 },
      { message: late, messageId: late, attempt: 4 },
    ];
    const results = await consumeBatch(
      fx.db,
      { scope: 's', maxAttempts: 3, onDeadLetter },
      deliveries,
      pay('s'),
    );
    expect(results.map((result) => result.outcome)).toEqual([
      'processed',
      'dead_lettered',
      'dead_lettered',
      'dead_lettered',
    ]);
    expect(deadLetters.map(({ reason }) => reason).sort()).toEqual([
      'invalid_id',
      'max_attempts',
      'missing_id',
    ]);
    expect(deadLetters.find(({ reason }) => reason === 'missing_id')?.error).toBeInstanceOf(
      MissingMessageIdError,
    );
    expect(deadLetters.find(({ reason }) => reason === 'invalid_id')?.error).toBeInstanceOf(
      InvalidIdempotencyKeyError,
    );
    expect(await fx.countPayments(good)).toBe(1);
    expect(await fx.countPayments(late)).toBe(0);
  });

  it('dead-letters a message with a malformed id and keeps the others in one batch', async () => {
    const [good1, good2] = ids(2) as [string, string];
    const { deadLetters, onDeadLetter } = collector();
    const deliveries: Delivery<string>[] = [
      { message: good1, messageId: good1, attempt: 1 },
      { message: 'bad id', messageId: 'bad-\u00e9', attempt: 1 },
      { message: good2, messageId: good2, attempt: 1 },
    ];
    const sent = await recorder.record(async () => {
      const results = await consumeBatch(
        recorder.db,
        { scope: 's', onDeadLetter },
        deliveries,
        pay('s'),
      );
      expect(results.map((result) => result.outcome)).toEqual([
        'processed',
        'dead_lettered',
        'processed',
      ]);
    });
    // The two valid messages share one transaction; the malformed id costs no statement.
    expect(sent.filter((statement) => statement === 'begin')).toHaveLength(1);
    expect(deadLetters).toMatchObject([{ message: 'bad id', reason: 'invalid_id' }]);
    expect(deadLetters[0]?.error).toBeInstanceOf(InvalidIdempotencyKeyError);
    for (const key of [good1, good2]) expect(await fx.countPayments(key, 's')).toBe(1);
  });

  it('runs no handler twice for a batch holding a message past its attempts; a processed one replays', async () => {
    const [good1, good2, late, done] = ids(4) as [string, string, string, string];
    const { deadLetters, onDeadLetter } = collector();
    const options = { scope: 's', maxAttempts: 3, onDeadLetter };
    await consumeOnce(fx.db, options, deliveriesOf([done])[0] as Delivery<string>, pay('s'));
    const ran: string[] = [];
    const results = await consumeBatch(
      fx.db,
      options,
      [
        { message: good1, messageId: good1, attempt: 1 },
        { message: done, messageId: done, attempt: 4 },
        { message: good2, messageId: good2, attempt: 1 },
        { message: late, messageId: late, attempt: 4 },
      ],
      pay('s', ran),
    );
    expect(results.map((result) => result.outcome)).toEqual([
      'processed',
      'replayed',
      'processed',
      'dead_lettered',
    ]);
    expect(ran).toEqual([good1, good2]);
    expect(deadLetters).toMatchObject([{ message: late, reason: 'max_attempts' }]);
    for (const key of [good1, good2, done]) expect(await fx.countPayments(key, 's')).toBe(1);
    expect(await fx.countPayments(late, 's')).toBe(0);
  });

  it('processes a message delivered twice in one batch once', async () => {
    const [id, other] = ids(2) as [string, string];
    const { onDeadLetter } = collector();
    const ran: string[] = [];
    const results = await consumeBatch(
      fx.db,
      { scope: 's', onDeadLetter },
      deliveriesOf([id, other, id]),
      pay('s', ran),
    );
    expect(ran).toEqual([id, other]);
    expect(results.map((result) => result.outcome)).toEqual(['processed', 'processed', 'replayed']);
    expect(responseOf(results[2])).toEqual(responseOf(results[0]));
    expect(await fx.countPayments(id)).toBe(1);
  });

  it('applies each message of two overlapping batches running at once exactly once', async () => {
    const shared = ids(30, 'overlap');
    const { deadLetters, onDeadLetter } = collector();
    const options = { scope: 'overlap', onDeadLetter };
    const results = await Promise.all([
      consumeBatch(fx.db, options, deliveriesOf(shared), pay('overlap')),
      consumeBatch(fx.db, options, deliveriesOf([...shared].reverse()), pay('overlap')),
      consumeBatch(
        fx.db,
        options,
        deliveriesOf(shared.filter((_, i) => i % 2 === 0)),
        pay('overlap'),
      ),
    ]);
    const outcomes = results.flat().map((result) => result.outcome);
    expect(outcomes.filter((outcome) => outcome === 'processed')).toHaveLength(shared.length);
    expect(outcomes.every((outcome) => outcome === 'processed' || outcome === 'replayed')).toBe(
      true,
    );
    expect(deadLetters).toEqual([]);
    for (const key of shared) expect(await fx.countPayments(key, 'overlap')).toBe(1);
  });

  it('commits nothing when the consumer process is SIGKILLed mid-batch, and the redelivery processes each once', async () => {
    const batch = ids(8, 'crash');
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../support/batch-consumer-child.ts', import.meta.url)),
        fx.url,
        'crash',
        batch.join(','),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = once(child, 'exit');
    const reported = once(child.stdout, 'data').then(([chunk]) => String(chunk).trim());
    const first = await Promise.race([reported, exited.then(([code]) => `exited with ${code}`)]);
    expect(first).toBe('in-handler');
    child.kill('SIGKILL');
    await exited;
    // The server notices the dead connection and rolls its transaction back: nothing of the batch.
    await expect
      .poll(
        async () => {
          const { rows } = await sql<{ count: string }>`
          select count(*) as count from pg_stat_activity
           where datname = current_database() and state like 'idle in transaction%'`.execute(fx.db);
          return Number(rows[0]?.count);
        },
        { timeout: 10_000 },
      )
      .toBe(0);
    expect(await countEntries(batch)).toBe(0);
    for (const key of batch) expect(await fx.countPayments(key, 'crash')).toBe(0);

    const { deadLetters, onDeadLetter } = collector();
    const results = await consumeBatch(
      fx.db,
      { scope: 'crash', onDeadLetter },
      deliveriesOf(batch, 2),
      pay('crash'),
    );
    expect(results.map((result) => result.outcome)).toEqual(batch.map(() => 'processed'));
    expect(deadLetters).toEqual([]);
    for (const key of batch) expect(await fx.countPayments(key, 'crash')).toBe(1);
  });

  it('stores encrypted results, which replay to consumeOnce and to a batch with the same key', async () => {
    const encryption = responseEncryption({ keys: [{ id: 'k', key: randomBytes(32) }] });
    const batch = ids(3);
    const { onDeadLetter } = collector();
    const options = { scope: 's', encryption, onDeadLetter };
    const results = await consumeBatch(fx.db, options, deliveriesOf(batch), pay('s'));
    const { rows } = await sql<{ response: string }>`
      select response::text as response from idempotency.ledger where key = any(${batch}::text[])`.execute(
      fx.db,
    );
    expect(rows).toHaveLength(3);
    for (const { response } of rows) expect(response).not.toContain('paymentId');
    const single = await consumeOnce(
      fx.db,
      options,
      deliveriesOf([batch[1]], 2)[0] as Delivery<string>,
      pay('s'),
    );
    expect(single.outcome).toBe('replayed');
    expect(JSON.stringify(responseOf(single))).toBe(JSON.stringify(responseOf(results[1])));
    const again = await consumeBatch(fx.db, options, deliveriesOf(batch, 2), pay('s'));
    expect(again.map((result) => result.outcome)).toEqual(batch.map(() => 'replayed'));
    expect(JSON.stringify(again.map(responseOf))).toBe(JSON.stringify(results.map(responseOf)));
  });

  it('refuses bad input with a typed error, writing nothing; an empty batch is no work', async () => {
    const { onDeadLetter } = collector();
    const options = { scope: 's', onDeadLetter };
    expect(await consumeBatch(fx.db, options, [], pay('s'))).toEqual([]);
    const tooMany = ids(MAX_BATCH_ITEMS + 1);
    await expect(
      consumeBatch(fx.db, options, deliveriesOf(tooMany), pay('s')),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    const batch = ids(2);
    await expect(
      consumeBatch(fx.db, options, deliveriesOf(batch, 0), pay('s')),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    await expect(
      consumeBatch(fx.db, { scope: '', onDeadLetter }, deliveriesOf(batch), pay('s')),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    await expect(
      consumeBatch(fx.db, options, deliveriesOf(batch), 'not a handler' as never),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    await expect(
      fx.db
        .transaction()
        .execute((trx) => consumeBatch(trx, options, deliveriesOf(batch), pay('s'))),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect(await countEntries([...tooMany, ...batch])).toBe(0);
  });
});

function responseOf<R>(result: ConsumeResult<R> | undefined): R {
  if (result?.outcome !== 'processed' && result?.outcome !== 'replayed') {
    throw new Error(`no response: ${result?.outcome}`);
  }
  return result.response;
}
