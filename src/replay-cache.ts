import { z } from 'zod';
import { parseOptions } from './internal/parse-options.ts';
import type { OpenedEntry } from './ledger-response-sealing.ts';

/** Default number of entries a {@link ReplayCache} keeps. */
export const DEFAULT_REPLAY_CACHE_ENTRIES = 10_000;

/** Options of {@link ReplayCache}. */
export interface ReplayCacheOptions {
  /** Most entries kept; the least recently used go first. Default 10,000. */
  maxEntries?: number;
}

interface CachedEntry {
  entry: OpenedEntry;
  /** `performance.now()` by which the entry has expired in the database. */
  deadlineMs: number;
}

const replayCacheOptionsSchema = z.strictObject({
  maxEntries: z.int().positive().max(10_000_000).default(DEFAULT_REPLAY_CACHE_ENTRIES),
});

/**
 * An in-process cache of completed ledger entries, so that a replay in this process costs no
 * database round trip. Opt-in: pass it as `replayCache` to `withIdempotency`, which fills it with
 * the entries it executes or reads (when it owns the transaction) and replays from it.
 *
 * Entries are kept per `Kysely` instance: a cache shared by calls on two databases keeps their
 * entries apart (calls through two instances on one database do not share entries either).
 *
 * It is safe because a completed, unexpired entry never changes: nothing updates it, and cleanup
 * deletes only expired ones. A cached entry is dropped no later than the moment the entry expires
 * by the database clock (its remaining time is measured by the database, and counted down here
 * from before the statement was sent). Its one blind spot: an entry deleted by hand keeps
 * replaying from the caches of running processes until it would have expired.
 *
 * With `encryption`, it holds responses decrypted, in this process's memory: a cached replay
 * costs no decryption, and is served whatever the call's `encryption` option (the entry was read
 * or written with a key already), except that a call with `plaintext: 'refuse'` refuses an entry
 * the ledger stores in clear, as it would refuse it read from the ledger.
 *
 * @example
 * ```ts
 * const replayCache = new ReplayCache({ maxEntries: 50_000 });
 * await withIdempotency(db, { scope, key, request, replayCache }, fn);
 * ```
 */
export class ReplayCache {
  /** Most entries kept. */
  readonly maxEntries: number;
  readonly #entries = new Map<string, CachedEntry>();

  constructor(options: ReplayCacheOptions = {}) {
    this.maxEntries = parseOptions(replayCacheOptionsSchema, options, 'ReplayCache').maxEntries;
  }

  /** Entries held, expired ones included until they are looked up or pushed out. */
  get size(): number {
    return this.#entries.size;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear();
  }

  /** @internal The live entry for `id`, if cached. */
  find(id: string): OpenedEntry | undefined {
    const cached = this.#entries.get(id);
    if (!cached) return undefined;
    this.#entries.delete(id);
    if (performance.now() >= cached.deadlineMs) return undefined;
    // Re-inserted: a Map iterates in insertion order, so the first key is the least recently used.
    this.#entries.set(id, cached);
    return cached.entry;
  }

  /** @internal Keeps `entry` until `deadlineMs` (on the `performance.now()` clock). */
  remember(id: string, entry: OpenedEntry, deadlineMs: number): void {
    this.#entries.delete(id);
    this.#entries.set(id, { entry, deadlineMs });
    if (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}

// A number per Kysely instance, so that one cache used with two databases (shards, a primary
// and an analytics copy) can never replay one database's entry for the other's call. A Kysely
// instance does not say which database it talks to, so instances stand in for databases: two
// instances on one database share nothing, which costs a round trip, never a wrong replay.
const databaseIds = new WeakMap<object, number>();
let nextDatabaseId = 1;

/** The cache key of (database, schema, scope, key); NUL cannot occur in any of them. */
export function replayCacheId(db: object, schema: string, scope: string, key: string): string {
  let databaseId = databaseIds.get(db);
  if (databaseId === undefined) {
    databaseId = nextDatabaseId++;
    databaseIds.set(db, databaseId);
  }
  return `${databaseId}\0${schema}\0${scope}\0${key}`;
}
