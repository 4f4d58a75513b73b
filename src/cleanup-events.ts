/**
 * The events cleanup publishes on `node:diagnostics_channel`: one per run of `cleanupExpired`
 * and per tick of `scheduleCleanup`, with what it deleted. Nothing is published while no one
 * subscribes.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import { traceRun } from './internal/trace-run.ts';

/**
 * The tracing channel of cleanup runs: `tracingChannel(CLEANUP_CHANNEL)` publishes `start`,
 * `end`, `asyncStart`, `asyncEnd` and `error` with one {@link CleanupEvent} per run.
 */
export const CLEANUP_CHANNEL = 'idempotency-ledger:cleanup';

/**
 * How a cleanup run ended. Version 1 consumers must tolerate values they do not know.
 * `'completed'`: no expired entry was left (the last batch was not full); `'aborted'`: the signal
 * (or `stop()`) ended it between batches; `'skipped'`: a scheduled tick found another instance
 * cleaning, and left the work to it; `'failed'`: a batch failed (the `error` channel has it).
 */
export type CleanupOutcome = 'completed' | 'aborted' | 'skipped' | 'failed';

/**
 * What a subscriber of {@link CLEANUP_CHANNEL} receives, read-only, complete by `asyncEnd`. A
 * public contract: while `version` is 1, fields are only added and `outcome` may gain values.
 */
export interface CleanupEvent {
  readonly version: 1;
  /** `'call'`: `cleanupExpired` (or the CLI's `cleanup`); `'schedule'`: a `scheduleCleanup` tick. */
  readonly trigger: 'call' | 'schedule';
  readonly schema: string;
  readonly batchSize: number;
  readonly outcome?: CleanupOutcome;
  /** Expired entries deleted, by the batches that committed. */
  readonly deleted: number;
  /** Batches that committed. */
  readonly batches: number;
  /** Milliseconds from the start of the run to its end, pauses included. */
  readonly durationMs?: number;
  readonly error?: unknown;
}

/** The event as cleanup fills it in; a run updates it whether or not anyone listens. */
export type CleanupProgress = {
  -readonly [K in keyof CleanupEvent]: CleanupEvent[K];
};

const channel: TracingChannel<CleanupProgress, CleanupProgress> = tracingChannel(CLEANUP_CHANNEL);

/**
 * Runs one cleanup, traced when anyone subscribes. `run` counts what it deletes into the progress
 * it is given and sets its outcome; a throw makes it `'failed'`.
 */
export function traceCleanup<R>(
  run: (progress: CleanupProgress) => Promise<R>,
  describe: { trigger: 'call' | 'schedule'; schema: string; batchSize: number },
): Promise<R> {
  const progress: CleanupProgress = { version: 1, ...describe, deleted: 0, batches: 0 };
  if (!channel.hasSubscribers) return run(progress);
  return traceRun(channel, progress, () => run(progress), {
    succeeded() {},
    failed() {
      progress.outcome = 'failed';
    },
  });
}
