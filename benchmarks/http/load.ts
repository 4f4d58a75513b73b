// One load run against one route: autocannon keeps `concurrency` keep-alive connections busy,
// each sending its next request as soon as the last one is answered, for `durationMs`.
//
// autocannon's own figures are not used for the table: its latency histogram has 1 ms buckets
// (too coarse below a few ms) and it notices the end of the duration only at its next sample
// tick. Every response is timed here from its 'response' event instead (hrtime, sub-ms), and the
// window is exactly `durationMs`: responses that complete after it count for the status check
// only.
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { type LatencySummary, machineTimes, summarize } from '../measure.ts';

/** What one request carries: its `Idempotency-Key` header and its JSON body. */
export interface RequestSpec {
  key: string;
  body: string;
}

export interface LoadRun {
  /** 2xx responses completed within the window. */
  ok: number;
  windowMs: number;
  reqPerSec: number;
  /** Latency of the 2xx responses completed within the window, in milliseconds. */
  latency: LatencySummary;
  /** Every response received, by status code, within the window or after it. */
  statuses: Record<string, number>;
  /** Socket errors and timeouts (autocannon's `errors`, which include `timeouts`). */
  errors: number;
  timeouts: number;
  /** CPU time of this process (the load generator), in cores. */
  loadGeneratorCores: number;
  /** Share of all the machine's cores that were busy. */
  machineBusy: number;
}

interface AutocannonRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  pipelining: number;
  duration: number;
  sampleInt: number;
  timeout: number;
  method: string;
  headers: Record<string, string>;
  requests: { setupRequest: (request: AutocannonRequest) => AutocannonRequest }[];
}

interface AutocannonResult {
  errors: number;
  timeouts: number;
}

/** The part of autocannon's API used here (it ships no types). */
type Autocannon = (
  options: AutocannonOptions,
  done: (error: Error | null, result: AutocannonResult) => void,
) => EventEmitter;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// How often autocannon checks whether its duration is over: the run overshoots by up to this.
const SAMPLE_INTERVAL_MS = 50;

export function runLoad(options: {
  port: number;
  path: string;
  concurrency: number;
  durationMs: number;
  next: () => RequestSpec;
}): Promise<LoadRun> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const startMachine = machineTimes();
  const startCpu = process.cpuUsage();
  const started = performance.now();
  const windowEnd = started + options.durationMs;
  return new Promise((resolve, reject) => {
    const tracker = autocannon(
      {
        url: `http://127.0.0.1:${options.port}`,
        connections: options.concurrency,
        pipelining: 1,
        duration: options.durationMs / 1000,
        sampleInt: SAMPLE_INTERVAL_MS,
        timeout: 10,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [
          {
            setupRequest(request) {
              const { key, body } = options.next();
              return {
                ...request,
                path: options.path,
                headers: { ...request.headers, 'idempotency-key': key },
                body,
              };
            },
          },
        ],
      },
      (error, result) => {
        const cpu = process.cpuUsage(startCpu);
        const endMachine = machineTimes();
        if (error) {
          reject(error);
          return;
        }
        resolve({
          ok: latencies.length,
          windowMs: options.durationMs,
          reqPerSec: latencies.length / (options.durationMs / 1000),
          latency: summarize(latencies),
          statuses,
          errors: result.errors,
          timeouts: result.timeouts,
          loadGeneratorCores: (cpu.user + cpu.system) / 1000 / (performance.now() - started),
          machineBusy:
            (endMachine.busy - startMachine.busy) / (endMachine.total - startMachine.total || 1),
        });
      },
    );
    tracker.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status >= 200 && status < 300 && performance.now() <= windowEnd) latencies.push(ms);
    });
  });
}

/** 2xx responses among `statuses`. */
export function okCount(statuses: Record<string, number>): number {
  return Object.entries(statuses).reduce(
    (sum, [status, count]) => (Number(status) >= 200 && Number(status) < 300 ? sum + count : sum),
    0,
  );
}
