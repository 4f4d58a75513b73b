import { describe, expect, it } from 'vitest';
import { FailureCounts } from '../../src/consumer/amqplib/failure-counts.ts';

// The count a classic queue's consumer keeps in its process; the amqplib tests run it on a broker.
describe('FailureCounts', () => {
  it('counts per (scope, id), forgets a settled message, and keeps only the most recent failures', () => {
    const counts = new FailureCounts('orders', 2);
    counts.record('a', 1);
    counts.record('b', 1);
    counts.record('a', 2);
    expect([counts.failures('a'), counts.failures('b')]).toEqual([2, 1]);
    expect(new FailureCounts('payments').failures('a')).toBe(0);
    counts.record('c', 1);
    // 'b' failed least recently: it is the one forgotten.
    expect([counts.failures('a'), counts.failures('b'), counts.failures('c')]).toEqual([2, 0, 1]);
    counts.forget('a');
    expect(counts.failures('a')).toBe(0);
  });
});
