import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  consumeOnce,
  type DeadLetter,
  MessageAttemptsExhaustedError,
  messageBodyId,
  validateConsumerOptions,
} from '../../src/consumer/index.ts';
import {
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  ResponseDecryptionError,
  responseEncryption,
  withIdempotency,
} from '../../src/index.ts';
import { createPayment, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

// The broker-neutral core, given deliveries as an adapter describes them; the adapters' own files
// run it against RabbitMQ and JetStream.
const fx = useLedgerFixture();

function collector() {
  const deadLetters: DeadLetter<string>[] = [];
  return {
    deadLetters,
    onDeadLetter: (letter: DeadLetter<string>) => void deadLetters.push(letter),
  };
}

describe('consumeOnce', () => {
  it('dead-letters an unprocessed message delivered after its attempts without running the handler', async () => {
    const key = uniqueKey();
    const { deadLetters, onDeadLetter } = collector();
    let ran = 0;
    const result = await consumeOnce(
      fx.db,
      { scope: 's', maxAttempts: 3, onDeadLetter },
      { message: 'body', messageId: key, attempt: 4 },
      async (trx) => {
        ran += 1;
        return createPayment('s', key)(trx);
      },
    );
    expect(result).toMatchObject({ outcome: 'dead_lettered', reason: 'max_attempts' });
    expect(ran).toBe(0);
    const error = deadLetters[0]?.error;
    expect(error).toBeInstanceOf(MessageAttemptsExhaustedError);
    expect(error).toMatchObject({ attempt: 4, maxAttempts: 3, key });
    expect((error as Error).message).not.toContain(key);
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('replays a processed message whatever its delivery count', async () => {
    const key = uniqueKey();
    const { deadLetters, onDeadLetter } = collector();
    const options = { scope: 's', maxAttempts: 2, onDeadLetter };
    const first = await consumeOnce(
      fx.db,
      options,
      { message: 'm', messageId: key, attempt: 2 },
      createPayment('s', key),
    );
    const late = await consumeOnce(
      fx.db,
      options,
      { message: 'm', messageId: key, attempt: 9 },
      createPayment('s', key),
    );
    expect(first.outcome).toBe('processed');
    expect(late).toEqual({ ...first, outcome: 'replayed' });
    expect(deadLetters).toEqual([]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('retries, never dead-letters, a processed message whose replay fails before the handler, however many deliveries', async () => {
    const key = uniqueKey();
    const { deadLetters, onDeadLetter } = collector();
    const written = { scope: 's', maxAttempts: 2, onDeadLetter };
    const encryption = responseEncryption({ keys: [{ id: 'old', key: randomBytes(32) }] });
    const first = await consumeOnce(
      fx.db,
      { ...written, encryption },
      { message: 'm', messageId: key, attempt: 1 },
      createPayment('s', key),
    );
    expect(first.outcome).toBe('processed');
    // A consumer deployed without the key the entry was sealed with cannot replay it: its
    // deliveries fail before the handler, and the processed message must not become a dead one.
    const withoutKey = responseEncryption({ keys: [{ id: 'new', key: randomBytes(32) }] });
    for (const attempt of [2, 3, 4]) {
      const late = await consumeOnce(
        fx.db,
        { ...written, encryption: withoutKey },
        { message: 'm', messageId: key, attempt },
        createPayment('s', key),
      );
      expect(late).toMatchObject({ outcome: 'retry', error: expect.any(ResponseDecryptionError) });
    }
    expect(deadLetters).toEqual([]);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('dead-letters a message whose id is not a valid key, and retries a handler whose own call refuses a key', async () => {
    const { deadLetters, onDeadLetter } = collector();
    const options = { scope: 's', onDeadLetter };
    const invalid = await consumeOnce(
      fx.db,
      options,
      { message: 'm', messageId: 'é'.repeat(3), attempt: 1 },
      async () => 'ran',
    );
    expect(invalid).toMatchObject({ outcome: 'dead_lettered', reason: 'invalid_id' });
    expect(deadLetters[0]?.error).toBeInstanceOf(InvalidIdempotencyKeyError);

    const key = uniqueKey();
    const inner = await consumeOnce(
      fx.db,
      options,
      { message: 'm', messageId: key, attempt: 1 },
      async (trx) => withIdempotency(trx, { scope: 'inner', key: undefined }, async () => 'never'),
    );
    expect(inner).toMatchObject({
      outcome: 'retry',
      error: expect.any(InvalidIdempotencyKeyError),
    });
    expect(deadLetters).toHaveLength(1);
  });

  it('refuses invalid options with a typed error before touching the message', async () => {
    const key = uniqueKey();
    const run = (options: object, attempt = 1) =>
      consumeOnce(
        fx.db,
        options as never,
        { message: 'm', messageId: key, attempt },
        createPayment('s', key),
      );
    await expect(run({ scope: 's' })).rejects.toThrow(InvalidIdempotencyOptionsError);
    await expect(run({ scope: '', onDeadLetter: () => undefined })).rejects.toMatchObject({
      issues: [expect.stringMatching(/^scope: /)],
    });
    await expect(
      run({ scope: 's', onDeadLetter: () => undefined, maxAttempts: 0 }),
    ).rejects.toThrow(InvalidIdempotencyOptionsError);
    await expect(run({ scope: 's', onDeadLetter: () => undefined }, 0)).rejects.toThrow(
      InvalidIdempotencyOptionsError,
    );
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);
  });

  // Each of these passed the consumer's own checks and then failed in withIdempotency on every
  // message, which no adapter settles.
  it.each([
    ['a scope with NUL', { scope: 'a\0b' }, /^scope: /],
    ['a scope with a lone surrogate', { scope: 'a\ud800' }, /^scope: /],
    ['a waitTimeoutMs beyond what Postgres takes', { waitTimeoutMs: 1e12 }, /^waitTimeoutMs: /],
    ['a schema name longer than Postgres keeps', { schema: 'x'.repeat(64) }, /^schema: /],
    ['an encryption not built by responseEncryption()', { encryption: {} }, /^encryption: /],
  ])('refuses %s as withIdempotency does, before any message', (_, invalid, issue) => {
    const options = { scope: 's', onDeadLetter: () => undefined, ...invalid };
    const check = () => validateConsumerOptions(options as never, 'idempotentConsumer');
    expect(check).toThrow(InvalidIdempotencyOptionsError);
    expect(check).toThrow(expect.objectContaining({ issues: [expect.stringMatching(issue)] }));
  });
});

describe('messageBodyId', () => {
  it('is the SHA-256 of the bytes, the same for a string and its UTF-8 bytes', () => {
    expect(messageBodyId('{"a":1}')).toBe(messageBodyId(Buffer.from('{"a":1}')));
    expect(messageBodyId('{"a":1}')).not.toBe(messageBodyId('{"a":2}'));
    expect(messageBodyId('')).toBe(
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });
});
