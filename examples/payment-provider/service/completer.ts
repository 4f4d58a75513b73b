/**
 * The completer, in the service's process: resumes abandoned operations (a 503 whose client
 * never retried, an attempt whose process died) on a timer, so that they finish without their
 * clients.
 */
import type { Kysely } from 'kysely';
import {
  type Operation,
  type ResumeResult,
  resumeAbandonedOperations,
} from '../../../src/operations/index.ts';

export interface CompleterOptions {
  // biome-ignore lint/suspicious/noExplicitAny: operations of any request and response type
  operations: readonly Operation<any, any, any>[];
  /** Pause between the end of one pass and the start of the next. */
  intervalMs: number;
  /** Told what each pass that found something did. */
  onPass?: (result: ResumeResult) => void;
  /** Told when a pass or a resumed attempt failed (the database is down, a step threw). */
  onError?: (error: unknown) => void;
}

/** A running completer. */
export interface Completer {
  /** No pass starts after this; resolves once the pass in flight, if any, has ended. */
  stop(): Promise<void>;
}

/**
 * Runs `resumeAbandonedOperations` every `intervalMs`, one pass at a time. Several processes may
 * run one each: an operation's lease lets only one of them resume it.
 *
 * @example
 * ```ts
 * const completer = startCompleter(db, { operations: [createPayment], intervalMs: 5_000 });
 * // on shutdown
 * await completer.stop();
 * ```
 */
export function startCompleter<DB>(db: Kysely<DB>, options: CompleterOptions): Completer {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> | undefined;
  // Aborted on stop: a pass under way finishes the operation it runs and takes no other.
  const stopping = new AbortController();

  const runPass = async () => {
    try {
      const result = await resumeAbandonedOperations(db, {
        operations: options.operations,
        signal: stopping.signal,
        ...(options.onError ? { onError: options.onError } : {}),
      });
      if (result.found > 0) options.onPass?.(result);
    } catch (error) {
      options.onError?.(error);
    }
  };
  // A timeout chained after each pass rather than an interval: passes never overlap.
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      pass = runPass().finally(() => {
        pass = undefined;
        schedule();
      });
    }, options.intervalMs);
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      stopping.abort();
      clearTimeout(timer);
      await pass;
    },
  };
}
