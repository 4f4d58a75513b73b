import { type AnyKysely, findDueStreams } from './outbox-store.ts';

/** Stream heads probed per statement, at most: bounds a statement when few streams are due. */
const MAX_PROBES = 1000;

/** Finds due streams round the outbox, each search going on from where the last one stopped. */
export interface DueStreamCursor {
  /** Up to `limit` due streams, in stream order from the cursor, going round once at most. */
  next(limit: number): Promise<string[]>;
}

/**
 * Why a cursor: taking the longest-waiting streams first meant probing every stream's head on
 * every pass (linear in the streams, to take a handful). Going round in stream order instead, a
 * pass probes only until it found enough, and every stream comes up within one round: a stream
 * waits for at most one pass over the others.
 */
export function dueStreamCursor(db: AnyKysely, schema: string): DueStreamCursor {
  let cursor: string | null = null;
  return {
    async next(limit) {
      const found = new Set<string>();
      // Once past the last stream, the search starts again from the first, once.
      let wrapped = cursor === null;
      for (;;) {
        const due = await findDueStreams(db, schema, {
          after: cursor,
          limit: limit - found.size,
          maxProbes: MAX_PROBES,
        });
        for (const stream of due.streams) found.add(stream);
        cursor = due.next;
        if (found.size >= limit) return [...found];
        if (cursor === null) {
          if (wrapped) return [...found];
          wrapped = true;
        }
      }
    },
  };
}
