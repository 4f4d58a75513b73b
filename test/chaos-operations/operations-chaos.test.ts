/**
 * A short operations chaos run (see run-operations-chaos.ts) inside the test suite: 300 payments
 * from 3 client processes and 40 planned faults of every kind, plus the provider's. CI also runs a longer one with
 * `npm run test:chaos:operations`. OPS_CHAOS_SEED=N replays a seed.
 */
import { describe, expect, inject, it } from 'vitest';
import { opsChaosOptions } from './ops-chaos-options.ts';
import { runOperationsChaos } from './run-operations-chaos.ts';

// 3 clients x 3 in flight: about 17 connections, so that the file next to it (up to 60) fits in
// a stock server's 100.
const SHORT_RUN = {
  operations: 300,
  clients: 3,
  inFlight: 3,
  faults: 40,
  minFaults: 24,
  durationMs: 150_000,
};

describe('operations chaos', () => {
  it('charges each payment at most once, and never commits a fenced-off write, under faults', async () => {
    const seed = process.env.OPS_CHAOS_SEED;
    const options = opsChaosOptions({ ...SHORT_RUN, ...(seed ? { seed: Number(seed) } : {}) });
    const lines: string[] = [];
    const report = await runOperationsChaos(options, {
      adminUrl: inject('adminDatabaseUrl'),
      log: (line) => lines.push(line),
    });
    const summary = lines.join('\n');
    console.log(summary);

    // Among the violations: fewer faults than minFaults, or a fault kind that never struck.
    expect(report.violations, `seed ${options.seed}:\n${summary}`).toEqual([]);
    expect(report.verdict.finished.created + report.verdict.finished.declined).toBe(300);
    expect(report.tally.faultsOf('pause:'), `seed ${options.seed}`).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
