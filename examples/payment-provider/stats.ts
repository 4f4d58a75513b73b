/**
 * What the provider counts, so that a test can tell a caller that deduplicates from one that
 * charges twice: per idempotency key, per customer, and in total.
 */
import type { FaultMode } from './fault.ts';

/** Counters of one idempotency key. */
export interface KeyStats {
  /** Requests received with this key, whatever became of them. */
  requests: number;
  /** Charges created for this key: 0 or 1, since the provider deduplicates. */
  charges: number;
  /** Requests answered with the stored response of an earlier one. */
  replays: number;
  /** 422: the key came with another body than the first time. */
  mismatches: number;
  /** 409: the key's first request was still being processed. */
  inProgress: number;
  /** 400: the body was invalid (nothing was stored; the key stays free). */
  invalid: number;
  /** Faults injected into this key's requests, by mode. */
  faults: Partial<Record<FaultMode, number>>;
}

/** Charges created for one customer, whatever their keys. */
export interface CustomerStats {
  charges: number;
  succeeded: number;
  declined: number;
  /** The sum of the succeeded charges' amounts. */
  succeededAmountCents: number;
}

/** What `GET /_stats` answers. */
export interface ProviderStats {
  totals: Omit<KeyStats, 'faults'> & {
    succeeded: number;
    declined: number;
    /** 400 without an Idempotency-Key header (not counted per key: there is none). */
    missingKey: number;
    faults: Partial<Record<FaultMode, number>>;
  };
  keys: Record<string, KeyStats>;
  customers: Record<string, CustomerStats>;
}

export type KeyEvent = 'requests' | 'replays' | 'mismatches' | 'inProgress' | 'invalid';

/**
 * The counters, kept in memory and saved with the charges.
 *
 * @example
 * ```ts
 * const stats = new StatsCounter();
 * stats.count('k1', 'requests');
 * stats.snapshot().keys.k1?.requests; // 1
 * ```
 */
export class StatsCounter {
  readonly #totals: ProviderStats['totals'];
  // Maps, not objects: a key such as "__proto__" or "constructor" gets counters of its own.
  readonly #keys: Map<string, KeyStats>;
  readonly #customers: Map<string, CustomerStats>;

  constructor(saved?: ProviderStats) {
    const stats = structuredClone(saved ?? emptyStats());
    this.#totals = stats.totals;
    this.#keys = new Map(Object.entries(stats.keys));
    this.#customers = new Map(Object.entries(stats.customers));
  }

  /** Counts one event of `key` (and in the totals). */
  count(key: string, event: KeyEvent): void {
    this.#key(key)[event]++;
    this.#totals[event]++;
  }

  countMissingKey(): void {
    this.#totals.requests++;
    this.#totals.missingKey++;
  }

  countFault(key: string, mode: FaultMode): void {
    const faults = this.#key(key).faults;
    faults[mode] = (faults[mode] ?? 0) + 1;
    this.#totals.faults[mode] = (this.#totals.faults[mode] ?? 0) + 1;
  }

  countCharge(
    key: string,
    charge: { customer: string; amount_cents: number; status: 'succeeded' | 'declined' },
  ): void {
    this.#key(key).charges++;
    this.#totals.charges++;
    this.#totals[charge.status]++;
    let customer = this.#customers.get(charge.customer);
    if (!customer) {
      customer = { charges: 0, succeeded: 0, declined: 0, succeededAmountCents: 0 };
      this.#customers.set(charge.customer, customer);
    }
    customer.charges++;
    customer[charge.status]++;
    if (charge.status === 'succeeded') customer.succeededAmountCents += charge.amount_cents;
  }

  /** A copy of the counters, safe to keep while counting goes on. */
  snapshot(): ProviderStats {
    // Object.fromEntries defines own properties, "__proto__" included.
    return structuredClone({
      totals: this.#totals,
      keys: Object.fromEntries(this.#keys),
      customers: Object.fromEntries(this.#customers),
    });
  }

  #key(key: string): KeyStats {
    let stats = this.#keys.get(key);
    if (!stats) {
      stats = {
        requests: 0,
        charges: 0,
        replays: 0,
        mismatches: 0,
        inProgress: 0,
        invalid: 0,
        faults: {},
      };
      this.#keys.set(key, stats);
    }
    return stats;
  }
}

function emptyStats(): ProviderStats {
  return {
    totals: {
      requests: 0,
      charges: 0,
      succeeded: 0,
      declined: 0,
      replays: 0,
      mismatches: 0,
      inProgress: 0,
      invalid: 0,
      missingKey: 0,
      faults: {},
    },
    keys: {},
    customers: {},
  };
}
