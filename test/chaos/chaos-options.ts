/** The knobs of a chaos run, their defaults (a CI-sized run), and the command line that sets them. */
import { parseArgs } from 'node:util';
import { randomSeed } from './prng.ts';

export interface ChaosOptions {
  seed: number;
  /** Logical operations, each retried until answered. */
  operations: number;
  /** Client processes. */
  clients: number;
  /** Operations each client process runs at once. */
  inFlight: number;
  keys: number;
  /** Keys are spread over this many scopes. */
  scopes: number;
  /** Longest fault phase; it also ends when every operation has its answer. */
  durationMs: number;
  /** Longest time, after the faults stop, for every operation to get its answer. */
  settleMs: number;
  /** Planned kills, cut commits and backend terminations (timeouts come on top). */
  faults: number;
  /** Server restarts of each mode, fast and immediate. */
  restarts: number;
  /**
   * Fewest faults (of all kinds, timeouts included) the run must inject; fewer is a failure of
   * its own, since a run without faults proves nothing.
   */
  minFaults: number;
  /** Share of attempts, while faults are on, made on connections with tiny timeouts. */
  tightShare: number;
  /** waitTimeoutMs the clients pass to withIdempotency. */
  waitTimeoutMs: number;
}

/** Planned faults per operation, unless set otherwise. */
const FAULTS_PER_OPERATION = 0.07;
/** Faults per operation the run must inject at least, unless set otherwise. */
const MIN_FAULTS_PER_OPERATION = 0.05;

/**
 * Options with defaults for a CI-sized run (10,000 operations, 700 planned faults, at least 500
 * injected), scaled to `operations` when that is given. More faults are planned than the run
 * must inject (`minFaults`): on a busy machine the clients can finish before every armed fault
 * has found an execution to strike. Restarts and timeouts come on top.
 */
export function chaosOptions(overrides: Partial<ChaosOptions> = {}): ChaosOptions {
  const operations = overrides.operations ?? 10_000;
  const faults = overrides.faults ?? Math.round(operations * FAULTS_PER_OPERATION);
  return {
    seed: randomSeed(),
    operations,
    clients: 8,
    inFlight: 4,
    keys: Math.max(1, Math.min(600, Math.round(operations / 12))),
    scopes: 4,
    durationMs: 240_000,
    settleMs: 60_000,
    faults,
    restarts: Math.max(1, Math.round(operations / 5_000)),
    minFaults: Math.min(faults, Math.round(operations * MIN_FAULTS_PER_OPERATION)),
    tightShare: 0.25,
    waitTimeoutMs: 2_000,
    ...overrides,
  };
}

const FLAGS = {
  seed: 'seed',
  operations: 'operations',
  clients: 'clients',
  'in-flight': 'inFlight',
  keys: 'keys',
  scopes: 'scopes',
  'duration-ms': 'durationMs',
  'settle-ms': 'settleMs',
  faults: 'faults',
  restarts: 'restarts',
  'min-faults': 'minFaults',
  'tight-share': 'tightShare',
  'wait-timeout-ms': 'waitTimeoutMs',
} as const satisfies Record<string, keyof ChaosOptions>;

/** Parses `--seed N --operations N ...`; every flag takes a number. */
export function parseChaosArgs(argv: string[]): ChaosOptions {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' }])),
    strict: true,
  });
  const overrides: Partial<ChaosOptions> = {};
  for (const [flag, field] of Object.entries(FLAGS)) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    const value = Number(text);
    if (!Number.isFinite(value) || value < 0)
      throw new Error(`--${flag} needs a number, not ${text}`);
    overrides[field] = value;
  }
  return chaosOptions(overrides);
}

/** The command line that runs these options again: the seed, and whatever differs from defaults. */
export function rerunCommand(options: ChaosOptions): string {
  const given: Partial<ChaosOptions> = {};
  const flags: string[] = [];
  // In FLAGS order, so that a default derived from an earlier flag (minFaults from faults) is
  // compared with what that flag makes it.
  for (const [flag, field] of Object.entries(FLAGS)) {
    const always = field === 'seed' || field === 'operations';
    if (!always && options[field] === chaosOptions(given)[field]) continue;
    given[field] = options[field];
    flags.push(`--${flag} ${options[field]}`);
  }
  return ['node test/chaos/run-chaos.ts', ...flags].join(' ');
}
