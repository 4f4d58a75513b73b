/** What a chaos run counted while it ran: the runner's side of the summary. */
import type { ArmedFault, FailureClass } from './protocol.ts';

/** Every kind of fault the harness injects, as the summary lists them. */
export const FAULT_KINDS = [
  'kill:before-claim',
  'kill:in-fn',
  'kill:before-commit',
  'kill:during-commit',
  'cut:before-send',
  'cut:after-send',
  'terminate',
  'statement-timeout',
  'lock-timeout',
  'restart:fast',
  'restart:immediate',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A success response one client received for a key. */
export interface Answer {
  keyIndex: number;
  replayed: boolean;
  /** JSON text, as the client serialised what withIdempotency returned. */
  response: string;
}

/** A fault that struck the COMMIT of an identified execution: did that commit go through? */
export interface CommitFault {
  fault: ArmedFault;
  keyIndex: number;
  token: string;
}

export class RunTally {
  attempts = 0;
  /** Attempts that called withIdempotency inside the client's own transaction. */
  callerTransactionAttempts = 0;
  /** Attempts with onConcurrent 'optimistic' (no claim before fn; the entry inserted last). */
  optimisticAttempts = 0;
  readonly answers: Answer[] = [];
  readonly failures = new Map<FailureClass, number>();
  readonly faults = new Map<FaultKind, number>(FAULT_KINDS.map((kind) => [kind, 0]));
  /** Client faults handed to a client process; those that never struck are armed - fired. */
  armed = 0;
  /** Client faults due when the fault phase ended, still waiting for a client to take them. */
  neverArmed = 0;
  readonly commitFaults: CommitFault[] = [];
  /** What went wrong that no correct run does: unexpected errors, crashed clients. */
  readonly problems: string[] = [];
  /** A few messages per failure class, to say what "unexpected" was. */
  readonly samples = new Map<FailureClass, string[]>();

  fault(kind: FaultKind, count = 1): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + count);
  }

  failure(failure: FailureClass, message: string): void {
    this.failures.set(failure, (this.failures.get(failure) ?? 0) + 1);
    const samples = this.samples.get(failure) ?? [];
    if (samples.length < 3) samples.push(message);
    this.samples.set(failure, samples);
    if (failure === 'statement-timeout' || failure === 'lock-timeout') this.fault(failure);
  }

  get totalFaults(): number {
    let total = 0;
    for (const count of this.faults.values()) total += count;
    return total;
  }

  /** Client faults that struck: kills and cuts. */
  get clientFaultsFired(): number {
    let fired = 0;
    for (const [kind, count] of this.faults) {
      if (kind.startsWith('kill:') || kind.startsWith('cut:')) fired += count;
    }
    return fired;
  }
}
