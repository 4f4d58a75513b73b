/**
 * A short chaos run (see run-chaos.ts) inside the test suite: about 1,000 operations and 50+
 * faults. CI also runs a long one with `npm run test:chaos`. It starts its own embedded Postgres
 * whatever DATABASE_URL says, because it restarts the server. CHAOS_SEED=N replays a seed.
 */
import { describe, expect, it } from 'vitest';
import { chaosOptions } from './chaos-options.ts';
import { runChaos } from './run-chaos.ts';

// 90 planned faults, of which some may find no execution left to strike (on a busy machine, up to
// half: the clients finish before every armed fault has struck); timeouts and restarts come on
// top. At least 50 must happen.
const SHORT_RUN = {
  operations: 1_000,
  clients: 6,
  faults: 90,
  minFaults: 50,
  // An upper bound, not a target: on a quiet machine the operations are all answered well within
  // a minute. On a saturated one the run needs longer to reach the progress points at which its
  // planned server restarts strike; cut short, it would end with fewer faults than it must show.
  durationMs: 120_000,
  settleMs: 30_000,
};

describe('chaos', () => {
  it('never executes a retried operation twice, nor loses its first response, under faults', async () => {
    const seed = process.env.CHAOS_SEED;
    const options = chaosOptions({ ...SHORT_RUN, ...(seed ? { seed: Number(seed) } : {}) });
    const lines: string[] = [];
    const report = await runChaos(options, (line) => lines.push(line)).catch((error: unknown) => {
      throw new Error(`chaos run with seed ${options.seed} failed: ${String(error)}`, {
        cause: error,
      });
    });
    const summary = lines.join('\n');
    console.log(summary);

    // Among the violations: fewer faults injected than minFaults, since a run without faults
    // proves nothing.
    expect(report.violations, `seed ${options.seed}:\n${summary}`).toEqual([]);
    const { faults } = report.tally;
    expect(faults.get('restart:fast'), `seed ${options.seed}`).toBeGreaterThanOrEqual(1);
    expect(faults.get('restart:immediate'), `seed ${options.seed}`).toBeGreaterThanOrEqual(1);
    expect(report.tally.clientFaultsFired, `seed ${options.seed}`).toBeGreaterThanOrEqual(10);
  }, 240_000);
});
