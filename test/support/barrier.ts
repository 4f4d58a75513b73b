import { type Kysely, sql } from 'kysely';
import { expect } from 'vitest';

/** A promise you resolve from outside: lets a test hold `fn` open while duplicates arrive. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Resolves once `count` sessions of this database are blocked on a heavyweight lock (a duplicate
 * waiting for the first call's transaction), as Postgres itself reports it.
 */
export async function waitForLockWaiters<DB>(db: Kysely<DB>, count: number, timeoutMs = 30_000) {
  const waiting = async () => {
    const { rows } = await sql<{ waiting: number }>`
      select count(*)::int as waiting from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock'`.execute(db);
    return rows[0]?.waiting ?? 0;
  };
  await expect
    .poll(waiting, {
      timeout: timeoutMs,
      interval: 10,
      message: `${count} sessions of this database waiting on a lock`,
    })
    .toBeGreaterThanOrEqual(count);
}
