/** How {@link raceAbort} ended: the work's value, or the signal first. */
export type RaceOutcome<T> = { aborted: false; value: T } | { aborted: true };

/**
 * Waits for `work` or for `signal` to abort, whichever comes first, for work that cannot itself
 * be cancelled. Work that loses the race keeps running; its later rejection is swallowed, so it
 * cannot become an unhandled rejection.
 *
 * @example
 * ```ts
 * const outcome = await raceAbort(migrate({ connectionString }), signal);
 * if (outcome.aborted) return EXIT_FAILURE;
 * ```
 */
export async function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<RaceOutcome<T>> {
  const abandon = (): RaceOutcome<T> => {
    work.catch(() => undefined);
    return { aborted: true };
  };
  if (signal.aborted) return abandon();
  let onAbort = () => {};
  const aborted = new Promise<RaceOutcome<T>>((resolve) => {
    onAbort = () => resolve(abandon());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([
      work.then((value) => ({ aborted: false as const, value })),
      aborted,
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
