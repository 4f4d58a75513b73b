// Timing, percentiles and resource accounting for one benchmark cell.
import os from 'node:os';
import { performance } from 'node:perf_hooks';

/**
 * Round trips seen on the wire, counted where they leave this process: every pg `client.query`
 * (database.ts wraps it) and every command sent to Redis (powertools.ts wraps the client).
 */
export const counters = { pgQueries: 0, redisCommands: 0 };

/**
 * While `lines` is set, database.ts appends the first words of every pg statement it counts:
 * which statements one path sends, in order (see {@link recordStatements}).
 */
export const statementLog: { lines: string[] | undefined } = { lines: undefined };

/** Runs `op` alone and returns the first words of each pg statement it sent, in order. */
export async function recordStatements(op: () => Promise<unknown>): Promise<string[]> {
  if (statementLog.lines) throw new Error('recordStatements: already recording');
  const lines: string[] = [];
  statementLog.lines = lines;
  try {
    await op();
  } finally {
    statementLog.lines = undefined;
  }
  return lines;
}

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface CpuUse {
  /** CPU time this Node process used, in cores (1 = one core busy all along). */
  nodeCores: number;
  /** Share of all the machine's cores that were busy (Node, Postgres, Redis, anything else). */
  machineBusy: number;
}

/** What one timed stretch of one variant did. Latencies are in milliseconds. */
export interface CellRun {
  ops: number;
  elapsedMs: number;
  opsPerSec: number;
  latency: LatencySummary;
  cpu: CpuUse;
  pgRoundTripsPerOp: number;
  redisRoundTripsPerOp: number;
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export function summarize(latencies: number[]): LatencySummary {
  const sorted = Float64Array.from(latencies).sort();
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

export function median(values: number[]): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return Number.NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** CPU time of all the machine's cores so far, busy and in all (os.cpus() units). */
export function machineTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of os.cpus()) {
    const all = times.user + times.nice + times.sys + times.irq + times.idle;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

/** Records how long `op` took, in milliseconds, into `into`. */
export async function timed<T>(into: number[], op: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const result = await op();
  into.push(performance.now() - started);
  return result;
}

/**
 * Runs `body`, which pushes one latency per completed operation, and accounts for time, CPU and
 * round trips around it. Throughput is completed operations over the whole stretch, tail included.
 */
export async function measure(body: (latencies: number[]) => Promise<void>): Promise<CellRun> {
  const latencies: number[] = [];
  const startCounters = { ...counters };
  const startMachine = machineTimes();
  const startCpu = process.cpuUsage();
  const started = performance.now();
  await body(latencies);
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(startCpu);
  const endMachine = machineTimes();
  const ops = latencies.length;
  return {
    ops,
    elapsedMs,
    opsPerSec: ops / (elapsedMs / 1000),
    latency: summarize(latencies),
    cpu: {
      nodeCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
      machineBusy:
        (endMachine.busy - startMachine.busy) / (endMachine.total - startMachine.total || 1),
    },
    pgRoundTripsPerOp: (counters.pgQueries - startCounters.pgQueries) / (ops || 1),
    redisRoundTripsPerOp: (counters.redisCommands - startCounters.redisCommands) / (ops || 1),
  };
}

/** `concurrency` workers each run `op` back to back while `keepGoing()` says so. */
export function runWhile(
  concurrency: number,
  keepGoing: () => boolean,
  op: (worker: number) => Promise<unknown>,
): Promise<CellRun> {
  return measure(async (latencies) => {
    const worker = async (id: number) => {
      while (keepGoing()) await timed(latencies, () => op(id));
    };
    await Promise.all(Array.from({ length: concurrency }, (_, id) => worker(id)));
  });
}

/** `concurrency` workers each run `op` back to back until `durationMs` have passed. */
export function runWorkers(
  concurrency: number,
  durationMs: number,
  op: (worker: number) => Promise<unknown>,
): Promise<CellRun> {
  const deadline = performance.now() + durationMs;
  return runWhile(concurrency, () => performance.now() < deadline, op);
}

/** `concurrency` workers run `op` until it has run `count` times in all. */
export function runCount(
  concurrency: number,
  count: number,
  op: (worker: number) => Promise<unknown>,
): Promise<CellRun> {
  return measure(async (latencies) => {
    let started = 0;
    const worker = async (id: number) => {
      while (started < count) {
        started++;
        await timed(latencies, () => op(id));
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, id) => worker(id)));
  });
}
