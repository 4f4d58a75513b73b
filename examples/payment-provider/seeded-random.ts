/**
 * A seeded pseudo-random generator (mulberry32): a fault plan's coin flips follow from its seed,
 * so a run that sends the same requests in the same order is hit by the same faults.
 *
 * @example
 * ```ts
 * const random = seededRandom(42);
 * random(); // a float in [0, 1), the same for every generator seeded with 42
 * ```
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
