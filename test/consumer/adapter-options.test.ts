import { describe, expect, it } from 'vitest';
import { assertBatchMessages, retryDelayFor } from '../../src/consumer/adapter-options.ts';
import { defaultRetryDelayMs } from '../../src/consumer/index.ts';
import { idempotentJetStreamBatchHandler } from '../../src/consumer/nats/index.ts';
import { InvalidIdempotencyOptionsError, MAX_BATCH_ITEMS } from '../../src/index.ts';

// The adapters' tests run a throwing retryDelayMs on the brokers; these are the other answers.
describe('retryDelayFor', () => {
  it('takes a finite delay >= 0, and the default for anything else', () => {
    expect(retryDelayFor(() => 0, 3)).toBe(0);
    expect(retryDelayFor(() => 250, 3)).toBe(250);
    for (const answer of [Number.NaN, -1, Number.POSITIVE_INFINITY, '250', undefined]) {
      expect(retryDelayFor(() => answer as number, 3)).toBe(defaultRetryDelayMs(3));
    }
    const throwing = () => {
      throw new Error('no delay today');
    };
    expect(retryDelayFor(throwing, 3)).toBe(defaultRetryDelayMs(3));
  });
});

describe('assertBatchMessages', () => {
  it('takes an array of up to MAX_BATCH_ITEMS messages, and refuses anything else naming the caller', async () => {
    expect(() => assertBatchMessages('x', new Array(MAX_BATCH_ITEMS))).not.toThrow();
    for (const messages of [new Array(MAX_BATCH_ITEMS + 1), undefined, 'messages']) {
      expect(() => assertBatchMessages('ordersBatch', messages)).toThrow(
        expect.objectContaining({
          message: expect.stringMatching(/^ordersBatch takes an array/),
          issues: [`messages: must be an array of at most ${MAX_BATCH_ITEMS} messages`],
        }),
      );
    }
    // The JetStream batch handler refuses an oversized batch before reading a message.
    const handle = idempotentJetStreamBatchHandler({} as never, {
      scope: 's',
      handler: async () => 1,
      onDeadLetter: () => {},
    });
    await expect(handle(new Array(MAX_BATCH_ITEMS + 1))).rejects.toBeInstanceOf(
      InvalidIdempotencyOptionsError,
    );
  });
});
