import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  type AnyKysely,
  claimStream,
  deletePublished,
  releaseStream,
  renewLease,
} from './outbox-store.ts';

/**
 * One claim of one stream, as the relay that made it sees it. The database sets the lease's end
 * with its own clock, when the claim or renewal runs; the relay counts from the moment it sent
 * that statement (a monotonic clock), which is earlier: `liveUntilMs` is a lower bound of the
 * lease's end whatever the offset between the two clocks.
 */
export interface StreamLease {
  /** Unique per claim; the host and pid make `outbox status` readable. */
  readonly holder: string;
  /** Takes the stream unless a lease on it is live. */
  claim(): Promise<boolean>;
  /**
   * Whether the lease lasts at least `durationMs` more, renewed first when it might not: false
   * when it ran out or another claim took the stream (the caller must then leave it).
   */
  lastsFor(durationMs: number): Promise<boolean>;
  /** Deletes a confirmed message while the lease is live; false when it was lost. */
  deletePublished(message: { stream: string; position: number }): Promise<boolean>;
  /** Gives the stream back, so that any relay may take it at once. */
  release(): Promise<void>;
}

export function streamLease(
  db: AnyKysely,
  options: { schema: string; leaseMs: number },
  stream: string,
): StreamLease {
  const { schema, leaseMs } = options;
  const holder = `${hostname()}:${process.pid}:${randomUUID()}`;
  let liveUntilMs = Number.NEGATIVE_INFINITY;
  // Runs a statement that takes or renews the lease, and moves liveUntilMs when it did.
  const renewing = async (statement: () => Promise<boolean>) => {
    const sentMs = performance.now();
    const live = await statement();
    liveUntilMs = live ? sentMs + leaseMs : Number.NEGATIVE_INFINITY;
    return live;
  };
  return {
    holder,
    claim: () => renewing(() => claimStream(db, schema, stream, holder, leaseMs)),
    async lastsFor(durationMs) {
      if (performance.now() + durationMs <= liveUntilMs) return true;
      if (!(await renewing(() => renewLease(db, schema, stream, holder, leaseMs)))) return false;
      // A renewal that itself took most of the lease leaves too little of it.
      return performance.now() + durationMs <= liveUntilMs;
    },
    deletePublished: (message) => deletePublished(db, schema, message, holder),
    release: () => releaseStream(db, schema, stream, holder),
  };
}
