/** What a run counts as it goes: attempts, answers, failures and faults. */
import type { FailureClass } from './ops-chaos-protocol.ts';

export interface Answer {
  paymentId: number;
  slot: number;
  response: string;
  replayed: boolean;
  resumed: boolean;
}

export class OpsChaosTally {
  attempts = 0;
  readonly answers: Answer[] = [];
  readonly failures = new Map<FailureClass, number>();
  /** Faults by kind: `kill:<boundary>`, `pause:<boundary>`, `cut-commit`, `terminate`. */
  readonly faults = new Map<string, number>();
  /** Client faults armed, and those that never found an attempt to strike. */
  armed = 0;
  neverStruck = 0;
  /** Paused attempts, by how they ended once resumed after another attempt took over. */
  readonly pausedEndings = new Map<string, number>();
  /** Pauses whose payment no newer attempt took over while the paused one was stopped. */
  pausesWithoutTakeover = 0;
  /** Client processes started again after a SIGKILL. */
  restarts = 0;
  /** What the completer did, summed over its passes. */
  readonly completer = { passes: 0, found: 0, finished: 0, pending: 0, skipped: 0, failed: 0 };
  /** Unexpected events: each is a violation. */
  readonly problems: string[] = [];

  fault(kind: string, count = 1): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + count);
  }

  failure(kind: FailureClass): void {
    this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1);
  }

  pausedEnding(outcome: string): void {
    this.pausedEndings.set(outcome, (this.pausedEndings.get(outcome) ?? 0) + 1);
  }

  /** Client and database faults struck (provider faults are counted by the provider). */
  get totalFaults(): number {
    let total = 0;
    for (const count of this.faults.values()) total += count;
    return total;
  }

  /** Faults of kinds starting with `prefix`. */
  faultsOf(prefix: string): number {
    let total = 0;
    for (const [kind, count] of this.faults) if (kind.startsWith(prefix)) total += count;
    return total;
  }
}
