/**
 * Everything a chaos run does that can be decided up front, from its seed: the keys, the order in
 * which operations arrive and which client sends each, and which faults strike at what point.
 */
import type { Prng } from './prng.ts';
import type { CutMode, KillPoint, Operation } from './protocol.ts';

/** Rows of the `tallies` table: fn also bumps one, so a business write spans two rows. */
export const TALLY_BUCKETS = 8;

/** What a key stands for: its scope and key, the request every retry sends, its tally row. */
export interface KeySpec {
  scope: string;
  key: string;
  request: { keyIndex: number; amountCents: number; currency: string };
  bucket: number;
}

/**
 * Key `k` of the run. Key strings repeat across scopes (`order-0` exists in every tenant), so a
 * mix-up between scopes would show as a wrong response.
 */
export function keySpec(keyIndex: number, scopes: number): KeySpec {
  return {
    scope: `tenant-${keyIndex % scopes}`,
    key: `order-${Math.floor(keyIndex / scopes)}`,
    request: { keyIndex, amountCents: 100 + ((keyIndex * 37) % 900), currency: 'EUR' },
    // Neighbouring keys arrive together (see planOperations) and share a tally row, so their
    // executions queue on its lock, which the tight lock_timeout then cuts short.
    bucket: Math.floor(keyIndex / 4) % TALLY_BUCKETS,
  };
}

/**
 * `count` operations over `keys` keys, every key at least once (when count >= keys). Operations
 * on a key are bunched in time and dealt round-robin to the clients, so that each key is first
 * executed while duplicates from other processes arrive: executions (and the faults aimed at
 * them) happen all through the run instead of only at its start.
 */
export function planOperations(rng: Prng, count: number, keys: number, clients: number) {
  const arrivals: { keyIndex: number; at: number }[] = [];
  for (let i = 0; i < count; i++) {
    const keyIndex = i % keys;
    // Each key's copies arrive around its slot in the run, overlapping a few neighbours.
    arrivals.push({ keyIndex, at: keyIndex + rng.next() * 3 });
  }
  arrivals.sort((a, b) => a.at - b.at);
  const operations: Operation[] = arrivals.map(({ keyIndex }, id) => ({ id, keyIndex }));
  const perClient: Operation[][] = Array.from({ length: clients }, () => []);
  for (const operation of operations) perClient[operation.id % clients]?.push(operation);
  return { operations, perClient };
}

/** A fault the runner injects, or arms a client with, once `at` operations have been answered. */
export type PlannedFault =
  | { kind: 'kill'; point: KillPoint }
  | { kind: 'cut'; mode: CutMode }
  | { kind: 'terminate'; backends: number }
  | { kind: 'restart'; mode: 'fast' | 'immediate' };

const WEIGHTED: { weight: number; fault: (rng: Prng) => PlannedFault }[] = [
  { weight: 3, fault: () => ({ kind: 'kill', point: 'before-claim' }) },
  { weight: 3, fault: () => ({ kind: 'kill', point: 'in-fn' }) },
  { weight: 3, fault: () => ({ kind: 'kill', point: 'before-commit' }) },
  { weight: 3, fault: () => ({ kind: 'kill', point: 'during-commit' }) },
  { weight: 4, fault: () => ({ kind: 'cut', mode: 'before-send' }) },
  { weight: 4, fault: () => ({ kind: 'cut', mode: 'after-send' }) },
  { weight: 6, fault: (rng) => ({ kind: 'terminate', backends: rng.int(1, 3) }) },
];
const TOTAL_WEIGHT = WEIGHTED.reduce((sum, entry) => sum + entry.weight, 0);

/** One fault of the weighted list, drawn at random. */
function drawFault(rng: Prng): PlannedFault {
  let roll = rng.next() * TOTAL_WEIGHT;
  for (const entry of WEIGHTED) {
    roll -= entry.weight;
    if (roll < 0) return entry.fault(rng);
  }
  return { kind: 'terminate', backends: 1 };
}

/**
 * `count` faults at random points of the run's progress, plus `restarts` server restarts of each
 * mode. They all fall between 2% and 85% of the operations, so that a fault armed late still meets
 * work to strike.
 */
export function planFaults(rng: Prng, operations: number, count: number, restarts: number) {
  const faults: { at: number; fault: PlannedFault }[] = [];
  const at = () => Math.floor(operations * (0.02 + rng.next() * 0.83));
  for (let i = 0; i < restarts; i++) {
    faults.push({ at: at(), fault: { kind: 'restart', mode: 'fast' } });
    faults.push({ at: at(), fault: { kind: 'restart', mode: 'immediate' } });
  }
  for (let i = 0; i < count; i++) faults.push({ at: at(), fault: drawFault(rng) });
  return faults.sort((a, b) => a.at - b.at);
}
