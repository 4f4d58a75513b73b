/**
 * A small seeded pseudo-random generator (mulberry32), so that a chaos run's plan (which keys,
 * which faults, when) follows from its seed alone and can be run again.
 */
export class Prng {
  #state: number;

  /** @param seed - Any integer; only its low 32 bits count. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick() from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** An independent generator for a sub-task, so that adding draws here does not shift it. */
  derive(...labels: number[]): Prng {
    let seed = this.#state ^ 0x9e3779b9;
    for (const label of labels) seed = Math.imul(seed ^ (label + 0x7f4a7c15), 0x85ebca6b) >>> 0;
    return new Prng(seed);
  }
}

/** A fresh random 32-bit seed, for runs that were not given one. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] ?? 1;
}
