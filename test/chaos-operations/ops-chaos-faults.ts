/**
 * The run's fault plan and who carries it out. Client faults (a SIGKILL at each boundary in
 * turn, a pause at each pause point in turn, a COMMIT cut) are armed on a client as the answers
 * come in; backend terminations are the runner's own. Provider faults are the provider's plan.
 */
import { type Kysely, sql } from 'kysely';
import type { FaultPlanInput } from '../../examples/payment-provider/fault-plan.ts';
import type { Prng } from '../chaos/prng.ts';
import type { OpsClientFleet } from './ops-chaos-fleet.ts';
import { BOUNDARIES, type ClientFault, PAUSE_POINTS } from './ops-chaos-protocol.ts';
import type { OpsChaosTally } from './ops-chaos-tally.ts';

export type PlannedFault = ClientFault | { kind: 'terminate'; backends: number };

/**
 * `count` faults spread over the first 90% of `answers`: kills 45%, cut commits 20%, backend
 * terminations 25%, pauses 10% (at least one of each when `count` allows).
 */
export function planOpsFaults(
  rng: Prng,
  count: number,
  answers: number,
): { at: number; fault: PlannedFault }[] {
  const plan: { at: number; fault: PlannedFault }[] = [];
  let kills = 0;
  let pauses = 0;
  for (let i = 0; i < count; i++) {
    const roll = i < 4 ? i / 4 + 0.01 : rng.next();
    let fault: PlannedFault;
    if (roll < 0.45)
      fault = { kind: 'kill', point: BOUNDARIES[kills++ % BOUNDARIES.length] as never };
    else if (roll < 0.65) fault = { kind: 'cut-commit' };
    else if (roll < 0.9) fault = { kind: 'terminate', backends: rng.int(1, 3) };
    else fault = { kind: 'pause', point: PAUSE_POINTS[pauses++ % PAUSE_POINTS.length] as never };
    plan.push({ at: Math.floor(answers * (0.02 + 0.88 * rng.next())), fault });
  }
  return plan.sort((a, b) => a.at - b.at);
}

/**
 * The provider's faults: one request in `1 / rate` meets one, of every mode: slow (within and
 * past the client's 400 ms timeout, so that a retry finds the first still charging), 5xx before
 * charging, no answer, the answer dropped after charging, a 5xx after charging.
 */
export function providerFaultPlan(seed: number, rate: number): FaultPlanInput {
  const share = (weight: number) => Math.min(1, rate * weight);
  return {
    seed,
    rules: [
      { fault: { mode: 'slow', delayMs: 150 }, probability: share(0.2) },
      { fault: { mode: 'slow', delayMs: 700 }, probability: share(0.15) },
      { fault: { mode: 'fail-5xx', status: 503 }, probability: share(0.2) },
      { fault: { mode: 'timeout' }, probability: share(0.15) },
      { fault: { mode: 'charge-then-drop' }, probability: share(0.15) },
      { fault: { mode: 'fail-after-charge-5xx', status: 500 }, probability: share(0.15) },
    ],
  };
}

export class OpsFaultInjector {
  readonly #plan: { at: number; fault: PlannedFault }[];
  readonly #fleet: OpsClientFleet;
  readonly #admin: Kysely<unknown>;
  readonly #rng: Prng;
  readonly #tally: OpsChaosTally;
  #next = 0;
  #stopped = false;
  readonly #waiting: ClientFault[] = [];
  #terminations: Promise<void> = Promise.resolve();

  constructor(options: {
    plan: { at: number; fault: PlannedFault }[];
    fleet: OpsClientFleet;
    admin: Kysely<unknown>;
    rng: Prng;
    tally: OpsChaosTally;
  }) {
    this.#plan = options.plan;
    this.#fleet = options.fleet;
    this.#admin = options.admin;
    this.#rng = options.rng;
    this.#tally = options.tally;
  }

  /** Called with the number of answers so far; strikes or arms every fault now due. */
  onProgress(answered: number): void {
    for (
      let due = this.#plan[this.#next];
      due && due.at <= answered;
      due = this.#plan[++this.#next]
    ) {
      if (this.#stopped) return;
      const { fault } = due;
      if (fault.kind === 'terminate') this.#terminate(fault.backends);
      else this.#waiting.push(fault);
    }
    this.#armWaiting();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#tally.neverStruck += this.#waiting.length;
    this.#waiting.length = 0;
    await this.#terminations;
  }

  #armWaiting(): void {
    for (let i = 0; i < this.#waiting.length && !this.#stopped; ) {
      const fault = this.#waiting[i] as ClientFault;
      // One pause at a time, and another client must be free to take over.
      if (fault.kind === 'pause' && this.#fleet.pausing) {
        i++;
        continue;
      }
      const slots = this.#fleet.armable();
      if (slots.length === 0 || (fault.kind === 'pause' && slots.length < 2)) return;
      this.#waiting.splice(i, 1);
      this.#fleet.arm(this.#rng.pick(slots), fault);
    }
  }

  #terminate(count: number): void {
    this.#terminations = this.#terminations
      .then(async () => {
        if (this.#stopped) return;
        const { rows } = await sql<{ pid: number; busy: boolean }>`
        select pid, state in ('active', 'idle in transaction') as busy from pg_stat_activity
         where application_name like 'ops-chaos-client-%'
           and application_name <> all(${this.#fleet.pausedSlots().map((slot) => `ops-chaos-client-${slot}`)}::text[])`.execute(
          this.#admin,
        );
        // Backends inside a step's transaction first; idle pooled ones when none is busy.
        const busy = rows.filter((row) => row.busy);
        const candidates = busy.length > 0 ? busy : rows;
        const chosen = new Set<number>();
        while (chosen.size < Math.min(count, candidates.length)) {
          chosen.add(this.#rng.pick(candidates).pid);
        }
        if (chosen.size === 0) return;
        const { rows: done } = await sql<{ terminated: boolean }>`
        select pg_terminate_backend(pid) as terminated
          from unnest(${[...chosen]}::int[]) as pid`.execute(this.#admin);
        this.#tally.fault('terminate', done.filter((row) => row.terminated).length);
      })
      .catch((error: unknown) => {
        this.#tally.problems.push(`a backend termination failed: ${String(error)}`);
      });
  }
}
