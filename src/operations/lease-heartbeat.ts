import type { Kysely } from 'kysely';
import { type OperationRef, renewLease } from './operation-store.ts';

/**
 * Renews an attempt's lease every `leaseMs / 3` while it runs, so that a long step does not let
 * it lapse (`onRenewed` after each renewal); when a renewal finds the operation taken over,
 * `onLost` is called once. A renewal
 * that fails (the database is unreachable) is tried again at the next beat: if the lease runs out
 * meanwhile, the fenced writes are what refuse this attempt. `stop()` resolves once a renewal
 * already sent has landed: a release must come after it, or the renewal would hold the lease again
 * (for `leaseMs`, with no one working).
 */
export function startHeartbeat(
  // biome-ignore lint/suspicious/noExplicitAny: raw SQL; table types do not apply.
  db: Kysely<any>,
  ref: OperationRef,
  fencingToken: string,
  leaseMs: number,
  on: { onLost: () => void; onRenewed?: () => void },
): { stop(): Promise<void> } {
  const { onLost, onRenewed } = on;
  let stopped = false;
  let beating = false;
  let renewal: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      if (stopped || beating) return;
      beating = true;
      renewal = renewLease(db, ref, fencingToken, leaseMs).then(
        (held) => {
          beating = false;
          if (held && !stopped) onRenewed?.();
          if (!held && !stopped) {
            stopped = true;
            clearInterval(timer);
            onLost();
          }
        },
        () => {
          beating = false;
        },
      );
    },
    Math.max(1, Math.floor(leaseMs / 3)),
  );
  // An attempt in flight must not keep a process alive that is otherwise done.
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
      return renewal;
    },
  };
}
