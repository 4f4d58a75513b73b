/**
 * A fault plan: which `POST /v1/charges` requests get which fault. Set it with
 * `POST /_faults` (from a test in another process) or `provider.setFaultPlan()`.
 */
import { z } from 'zod';
import { describeIssues } from './describe-issues.ts';
import { type Fault, faultSchema } from './fault.ts';
import { seededRandom } from './seeded-random.ts';

/**
 * One rule of a plan. A request is a candidate if its key is in `keys` (any key when absent)
 * and the rule is not spent (`times`, `timesPerKey`); a candidate is hit with chance
 * `probability` (1 when absent). Combine them:
 *
 * - `{ fault, times: 3 }`: the next 3 requests.
 * - `{ fault, probability: 0.2 }`: one request in five, drawn from the plan's seeded generator.
 * - `{ fault, keys: ['k1'], timesPerKey: 1 }`: the first request with key `k1` (its retry goes
 *   through).
 */
export interface FaultRule {
  fault: Fault;
  /** Only requests with one of these idempotency keys. */
  keys?: string[];
  /** The rule hits at most this many requests, then is spent. */
  times?: number;
  /** The rule hits at most this many requests per key. */
  timesPerKey?: number;
  /** The chance that a candidate request is hit, in [0, 1]. */
  probability?: number;
}

/**
 * What `POST /_faults` takes. Rules are tried in order and the first that hits a request
 * decides its fault; a request that no rule hits is served normally.
 *
 * @example
 * ```json
 * { "seed": 7, "rules": [
 *   { "fault": { "mode": "fail-5xx", "status": 503 }, "times": 2 },
 *   { "fault": { "mode": "charge-then-drop" }, "keys": ["order-17"], "timesPerKey": 1 },
 *   { "fault": { "mode": "slow", "delayMs": 300 }, "probability": 0.1 }
 * ] }
 * ```
 */
export interface FaultPlanInput {
  /** Seeds the generator `probability` draws from (0 when absent). */
  seed?: number;
  rules: FaultRule[];
}

/** A rule as `GET /_faults` shows it: with how many requests it has hit so far. */
export interface FaultRuleState extends FaultRule {
  hits: number;
}

export const faultPlanSchema: z.ZodType<FaultPlanInput> = z.strictObject({
  seed: z.int().optional(),
  rules: z.array(
    z.strictObject({
      fault: faultSchema,
      keys: z.array(z.string().min(1)).min(1).optional(),
      times: z.int().min(0).optional(),
      timesPerKey: z.int().min(0).optional(),
      probability: z.number().min(0).max(1).optional(),
    }),
  ),
});

/**
 * Validates a plan sent as JSON.
 *
 * @example
 * ```ts
 * parseFaultPlan({ rules: [{ fault: { mode: 'timeout' }, times: 1 }] }); // { ok: true, plan }
 * ```
 */
export function parseFaultPlan(
  input: unknown,
): { ok: true; plan: FaultPlanInput } | { ok: false; message: string } {
  const result = faultPlanSchema.safeParse(input);
  return result.success
    ? { ok: true, plan: result.data }
    : { ok: false, message: describeIssues(result.error) };
}

/**
 * A plan in force: picks each request's fault and counts the hits. Draws happen in the order
 * requests are processed, so runs repeat exactly when requests arrive in the same order
 * (sequential clients); concurrent clients interleave differently from run to run.
 *
 * @example
 * ```ts
 * const plan = new FaultPlan({ rules: [{ fault: { mode: 'fail-5xx' }, times: 1 }] });
 * plan.faultFor('k1'); // { mode: 'fail-5xx' }
 * plan.faultFor('k1'); // undefined: the rule is spent
 * ```
 */
export class FaultPlan {
  readonly #seed: number;
  readonly #random: () => number;
  readonly #rules: { rule: FaultRule; hits: number; hitsByKey: Map<string, number> }[];

  constructor(plan: FaultPlanInput = { rules: [] }) {
    this.#seed = plan.seed ?? 0;
    this.#random = seededRandom(this.#seed);
    this.#rules = plan.rules.map((rule) => ({ rule, hits: 0, hitsByKey: new Map() }));
  }

  /** The fault for the next request with `key`, if a rule hits it. */
  faultFor(key: string): Fault | undefined {
    for (const state of this.#rules) {
      const { rule } = state;
      if (rule.keys && !rule.keys.includes(key)) continue;
      if (rule.times !== undefined && state.hits >= rule.times) continue;
      const hitsOfKey = state.hitsByKey.get(key) ?? 0;
      if (rule.timesPerKey !== undefined && hitsOfKey >= rule.timesPerKey) continue;
      // Drawn only for candidates, so a rule aimed at other keys does not shift the sequence.
      if (rule.probability !== undefined && this.#random() >= rule.probability) continue;
      state.hits++;
      state.hitsByKey.set(key, hitsOfKey + 1);
      return rule.fault;
    }
    return undefined;
  }

  /** The plan with each rule's hits so far (what `GET /_faults` answers). */
  describe(): { seed: number; rules: FaultRuleState[] } {
    return {
      seed: this.#seed,
      rules: this.#rules.map(({ rule, hits }) => ({ ...rule, hits })),
    };
  }
}
