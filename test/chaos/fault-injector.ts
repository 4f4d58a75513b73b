/**
 * Works through the run's fault plan as operations get their answers: arms client processes with
 * kills and cut commits, and carries out the faults that come from outside the clients
 * (backends terminated, the server restarted) one at a time.
 */
import { sql } from 'kysely';
import type { EmbeddedPostgresServer } from '../../scripts/embedded-postgres.ts';
import type { ChaosDb } from './chaos-schema.ts';
import type { ClientFleet } from './client-fleet.ts';
import type { PlannedFault } from './plan.ts';
import type { Prng } from './prng.ts';
import type { RunTally } from './run-tally.ts';

type ServerFault = Extract<PlannedFault, { kind: 'terminate' | 'restart' }>;
type ClientFault = Extract<PlannedFault, { kind: 'kill' | 'cut' }>;

export interface InjectorOptions {
  plan: { at: number; fault: PlannedFault }[];
  fleet: ClientFleet;
  server: EmbeddedPostgresServer;
  /** The runner's own connection pool to the chaos database. */
  admin: ChaosDb;
  rng: Prng;
  tally: RunTally;
}

export class FaultInjector {
  readonly #options: InjectorOptions;
  #next = 0;
  #stopped = false;
  /** Client faults due, waiting for a client process that can take one. */
  readonly #waiting: ClientFault[] = [];
  /** Server faults run one after another, never two restarts at once. */
  #queue: Promise<void> = Promise.resolve();
  #failure: unknown;

  constructor(options: InjectorOptions) {
    this.#options = options;
  }

  /** Called with the number of answered operations; strikes every fault now due. */
  onProgress(answered: number): void {
    const { plan } = this.#options;
    for (let due = plan[this.#next]; due && due.at <= answered; due = plan[++this.#next]) {
      if (this.#stopped) return;
      const { fault } = due;
      if (fault.kind === 'kill' || fault.kind === 'cut') this.#waiting.push(fault);
      else this.#enqueue(fault);
    }
    this.#armWaiting();
  }

  /** Ends the fault phase; resolves once the server fault under way (if any) is over. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#options.tally.neverArmed += this.#waiting.length;
    this.#waiting.length = 0;
    await this.#queue;
    if (this.#failure) throw this.#failure;
  }

  #armWaiting(): void {
    const { fleet, rng } = this.#options;
    while (this.#waiting.length > 0 && !this.#stopped) {
      const slots = fleet.armable();
      if (slots.length === 0) return;
      const fault = this.#waiting.shift() as ClientFault;
      fleet.arm(rng.pick(slots), fault);
    }
  }

  #enqueue(fault: ServerFault): void {
    this.#queue = this.#queue
      .then(() => (this.#stopped ? undefined : this.#strike(fault)))
      .catch((error: unknown) => {
        this.#failure ??= error;
      });
  }

  async #strike(fault: ServerFault): Promise<void> {
    const { server, tally } = this.#options;
    if (fault.kind === 'restart') {
      // A fast shutdown disconnects everyone and checkpoints; an immediate one is a crash, and
      // the server runs crash recovery on the way up. Either way, the fault stops here if the
      // server does not come back: nothing else could be checked.
      await server.restart(fault.mode);
      tally.fault(`restart:${fault.mode}`);
      return;
    }
    // The runner's connection may itself have been cut by a restart just before: try again.
    for (let attempt = 1; ; attempt++) {
      try {
        tally.fault('terminate', await this.#terminateBackends(fault.backends));
        return;
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
  }

  /**
   * Terminates up to `count` of the clients' backends, preferring ones inside a transaction or a
   * statement; returns how many it terminated.
   */
  async #terminateBackends(count: number): Promise<number> {
    const { admin, rng } = this.#options;
    const { rows } = await sql<{ pid: number; busy: boolean }>`
      select pid, state in ('active', 'idle in transaction') as busy
        from pg_stat_activity
       where application_name like 'chaos-client-%'`.execute(admin);
    const busy = rows.filter((row) => row.busy);
    const pool = busy.length >= count ? busy : rows;
    const chosen = new Set<number>();
    while (chosen.size < Math.min(count, pool.length)) chosen.add(rng.pick(pool).pid);
    if (chosen.size === 0) return 0;
    const { rows: done } = await sql<{ terminated: boolean }>`
      select pg_terminate_backend(pid) as terminated
        from unnest(${[...chosen]}::int[]) as pid`.execute(admin);
    return done.filter((row) => row.terminated).length;
  }
}
