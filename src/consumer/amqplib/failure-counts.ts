import { createHash } from 'node:crypto';

/** Most messages whose failures one handler remembers; the least recently failed is forgotten. */
export const MAX_COUNTED_MESSAGES = 10_000;

/**
 * Failed attempts per message, counted in this process for queues whose broker keeps no count (a
 * classic RabbitMQ queue). Keyed by a SHA-256 of (scope, id), so that message ids, which may be
 * the producer's secrets, are not held in memory; bounded to {@link MAX_COUNTED_MESSAGES}
 * entries, least recently failed out first. Each consumer process counts on its own: with N of
 * them, a failing message can get up to N × maxAttempts deliveries.
 */
export class FailureCounts {
  readonly #scope: string;
  readonly #maxEntries: number;
  // A Map iterates in insertion order: re-inserting on each failure keeps the oldest first.
  readonly #counts = new Map<string, number>();

  constructor(scope: string, maxEntries = MAX_COUNTED_MESSAGES) {
    this.#scope = scope;
    this.#maxEntries = maxEntries;
  }

  /** Failed attempts of the message so far. */
  failures(id: string): number {
    return this.#counts.get(this.#slot(id)) ?? 0;
  }

  /** Records that `attempt` failed after reaching the handler. */
  record(id: string, attempt: number): void {
    const slot = this.#slot(id);
    this.#counts.delete(slot);
    this.#counts.set(slot, attempt);
    if (this.#counts.size > this.#maxEntries) {
      const oldest = this.#counts.keys().next().value;
      if (oldest !== undefined) this.#counts.delete(oldest);
    }
  }

  /** Forgets the message, once it is settled. */
  forget(id: string): void {
    this.#counts.delete(this.#slot(id));
  }

  #slot(id: string): string {
    return createHash('sha256').update(this.#scope).update('\0').update(id).digest('base64');
  }
}
