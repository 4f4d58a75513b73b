/**
 * The knobs of an operations chaos run, their defaults (a CI-sized run), and the command line
 * that sets them again.
 */
import { parseArgs } from 'node:util';
import { randomSeed } from '../chaos/prng.ts';

export interface OpsChaosOptions {
  seed: number;
  /** Payments, each retried by its clients until answered. */
  operations: number;
  /** Client processes. */
  clients: number;
  /** Operations each client process runs at once. */
  inFlight: number;
  /** Share of operations a second client process also sends (concurrent duplicates). */
  duplicateShare: number;
  /** Lease of every attempt; the heartbeat renews it every third. */
  leaseMs: number;
  /** Planned client faults (kills, pauses, cut commits) and backend terminations. */
  faults: number;
  /** Fewest faults the run must show, provider faults not counted. */
  minFaults: number;
  /** Chance that a provider request meets a fault (split among the provider's fault modes). */
  providerFaultRate: number;
  /** Longest fault phase; it also ends when every operation has its answers. */
  durationMs: number;
  /** Longest time, after the faults stop, for every operation to get its answers. */
  settleMs: number;
  /**
   * `no-fencing`: run the clients and the completer on a copy of the library whose recording
   * writes do not check the fencing token, to show that the run catches it.
   */
  broken: 'none' | 'no-fencing';
}

/** Options for a CI-sized run (2,000 payments, 200 planned faults, 120 at least), or scaled. */
export function opsChaosOptions(overrides: Partial<OpsChaosOptions> = {}): OpsChaosOptions {
  const operations = overrides.operations ?? 2_000;
  const faults = overrides.faults ?? Math.round(operations / 10);
  return {
    seed: randomSeed(),
    operations,
    clients: 4,
    inFlight: 4,
    duplicateShare: 0.15,
    leaseMs: 1_000,
    faults,
    minFaults: Math.round(faults * 0.6),
    providerFaultRate: 0.2,
    durationMs: 300_000,
    settleMs: 60_000,
    broken: 'none',
    ...overrides,
  };
}

const NUMERIC = {
  seed: 'seed',
  operations: 'operations',
  clients: 'clients',
  'in-flight': 'inFlight',
  'duplicate-share': 'duplicateShare',
  'lease-ms': 'leaseMs',
  faults: 'faults',
  'min-faults': 'minFaults',
  'provider-fault-rate': 'providerFaultRate',
  'duration-ms': 'durationMs',
  'settle-ms': 'settleMs',
} as const satisfies Record<string, keyof OpsChaosOptions>;

/** Parses `--seed N --operations N ... [--broken no-fencing]`. */
export function parseOpsChaosArgs(argv: string[]): OpsChaosOptions {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      [...Object.keys(NUMERIC), 'broken'].map((flag) => [flag, { type: 'string' as const }]),
    ),
    strict: true,
  });
  const overrides: Partial<OpsChaosOptions> = {};
  for (const [flag, field] of Object.entries(NUMERIC)) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    const value = Number(text);
    if (!Number.isFinite(value) || value < 0) {
      throw new Error(`--${flag} needs a number, not ${text}`);
    }
    overrides[field] = value;
  }
  if (values.broken !== undefined) {
    if (values.broken !== 'no-fencing' && values.broken !== 'none') {
      throw new Error(`--broken takes no-fencing or none, not ${String(values.broken)}`);
    }
    overrides.broken = values.broken;
  }
  return opsChaosOptions(overrides);
}

/** The command line that runs these options again: the seed, and whatever differs from defaults. */
export function rerunOpsCommand(options: OpsChaosOptions): string {
  const given: Partial<OpsChaosOptions> = {};
  const flags: string[] = [];
  for (const [flag, field] of Object.entries(NUMERIC)) {
    const always = field === 'seed' || field === 'operations';
    if (!always && options[field] === opsChaosOptions(given)[field]) continue;
    given[field] = options[field];
    flags.push(`--${flag} ${options[field]}`);
  }
  if (options.broken !== 'none') flags.push(`--broken ${options.broken}`);
  return ['node test/chaos-operations/run-operations-chaos.ts', ...flags].join(' ');
}
