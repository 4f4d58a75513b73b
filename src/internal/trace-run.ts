import type { TracingChannel } from 'node:diagnostics_channel';

/**
 * Runs `run` traced on `channel` with `event` as its context: `settle` fills in the outcome from
 * the result or the error before Node publishes `asyncEnd` (and `error`), and `durationMs` is
 * set either way. For the core's events; callers check for subscribers first, so that nothing is
 * built while no one listens.
 */
export function traceRun<E extends { durationMs?: number }, R>(
  channel: TracingChannel<E, E>,
  event: E,
  run: () => Promise<R>,
  settle: { succeeded(result: R): void; failed(error: unknown): void },
): Promise<R> {
  const startedAt = performance.now();
  return channel.tracePromise(async () => {
    try {
      const result = await run();
      settle.succeeded(result);
      return result;
    } catch (error) {
      settle.failed(error);
      throw error;
    } finally {
      event.durationMs = performance.now() - startedAt;
    }
  }, event);
}
