import { describe, expect, it } from 'vitest';
import { retryDelayFor } from '../../src/consumer/adapter-options.ts';
import { defaultRetryDelayMs } from '../../src/consumer/index.ts';

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
