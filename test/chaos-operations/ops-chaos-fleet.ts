/**
 * The runner's side of the client processes: starts them, gives each its payments, starts a
 * killed one again with what it had not been answered yet, and conducts pauses: when a client
 * has stopped itself inside an attempt, another client takes the payment over and holds at the
 * same boundary; then the paused one is continued (SIGCONT), must fail on its fenced write, and
 * the newer attempt goes on.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type {
  ClientConfig,
  ClientFault,
  ClientMessage,
  PausePoint,
  PaymentSpec,
  RunnerMessage,
} from './ops-chaos-protocol.ts';
import type { OpsChaosTally } from './ops-chaos-tally.ts';

const clientMain = fileURLToPath(new URL('./ops-chaos-client.ts', import.meta.url));
/** How long a paused client waits for a takeover to hold, then is continued anyway. */
const TAKEOVER_TIMEOUT_MS = 15_000;
/** How long a holding takeover waits for the continued attempt to end. */
const PAUSED_END_TIMEOUT_MS = 5_000;
/** Client processes that died other than by a planned SIGKILL, before the run stops starting them. */
const MAX_CRASHES = 3;

export interface FleetOptions {
  config: Omit<ClientConfig, 'slot' | 'incarnation' | 'seed'> & { seed: number };
  /** The payments of each client process. */
  assignments: PaymentSpec[][];
  tally: OpsChaosTally;
  onProgress: (answered: number) => void;
}

interface Slot {
  index: number;
  incarnation: number;
  child: ChildProcess;
  outstanding: Map<number, PaymentSpec>;
  armed: boolean;
  stopped: boolean;
}

interface Pause {
  payment: PaymentSpec;
  point: PausePoint;
  /** The paused attempt's fencing token. */
  token: bigint;
  paused: Slot;
  /** The newer attempt holding at the same boundary: a client's, or the completer's. */
  taker?: { slot?: Slot; release: () => void };
  timer: NodeJS.Timeout;
  continued: boolean;
}

export class OpsClientFleet {
  readonly #options: FleetOptions;
  readonly #slots: Slot[] = [];
  readonly #payments = new Map<number, PaymentSpec>();
  #answered = 0;
  #stopping = false;
  #calm = false;
  #pause: Pause | undefined;
  #crashes = 0;
  #allAnswered: (() => void) | undefined;

  constructor(options: FleetOptions) {
    this.#options = options;
    for (const list of options.assignments) for (const p of list) this.#payments.set(p.id, p);
  }

  start(): void {
    this.#options.assignments.forEach((payments, index) => {
      const outstanding = new Map(payments.map((p) => [p.id, p]));
      const slot = { index, incarnation: 0, outstanding, armed: false, stopped: false } as Slot;
      this.#slots.push(slot);
      this.#spawn(slot);
    });
  }

  /** Resolves once every client has its answers for every payment it was given. */
  whenAllAnswered(): Promise<void> {
    if (this.unanswered().length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#allAnswered = resolve;
    });
  }

  /** (client, payment) pairs without an answer yet. */
  unanswered(): { slot: number; paymentId: number }[] {
    return this.#slots.flatMap((slot) =>
      [...slot.outstanding.keys()].map((paymentId) => ({ slot: slot.index, paymentId })),
    );
  }

  /** Clients that can be armed now: running, not paused, not armed, with payments to send. */
  armable(): number[] {
    return this.#slots
      .filter((s) => !s.armed && !s.stopped && s.outstanding.size > 0 && !this.#exited(s))
      .map((s) => s.index);
  }

  /** Clients stopped by a pause: their backends are left alone by terminations. */
  pausedSlots(): number[] {
    return this.#slots.filter((s) => s.stopped).map((s) => s.index);
  }

  /** Whether a pause is being conducted (one at a time). */
  get pausing(): boolean {
    return this.#pause !== undefined;
  }

  arm(slot: number, fault: ClientFault): void {
    const target = this.#slots[slot] as Slot;
    target.armed = true;
    this.#options.tally.armed += 1;
    this.#send(target, { type: 'arm', fault });
  }

  /** Ends the faults: disarms every client. */
  calm(): void {
    this.#calm = true;
    for (const slot of this.#slots) {
      if (slot.armed) this.#options.tally.neverStruck += 1;
      slot.armed = false;
      this.#send(slot, { type: 'calm' });
    }
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#pause) clearTimeout(this.#pause.timer);
    await Promise.all(
      this.#slots.map(async (slot) => {
        const { child } = slot;
        if (this.#exited(slot)) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        if (slot.stopped) child.kill('SIGCONT');
        this.#send(slot, { type: 'exit' });
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  #spawn(slot: Slot): void {
    const { config } = this.#options;
    const clientConfig: ClientConfig = {
      ...config,
      slot: slot.index,
      incarnation: slot.incarnation,
      seed: (config.seed ^ (slot.index * 7919 + slot.incarnation * 104_729)) >>> 0,
    };
    const child = fork(clientMain, [JSON.stringify(clientConfig)], {
      execArgv: [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.child = child;
    slot.armed = false;
    slot.stopped = false;
    child.on('message', (message: ClientMessage) => this.#onMessage(slot, message));
    child.once('exit', () => this.#onExit(slot, child));
    this.#send(slot, { type: 'work', payments: [...slot.outstanding.values()] });
  }

  #onExit(slot: Slot, child: ChildProcess): void {
    if (this.#stopping || slot.child !== child) return;
    if (child.signalCode !== 'SIGKILL') {
      this.#options.tally.problems.push(
        `client ${slot.index} exited on its own (code ${child.exitCode}, signal ${child.signalCode})`,
      );
      // A client that cannot start would be started again for ever: give up on it.
      if (++this.#crashes > MAX_CRASHES) return;
    }
    const pause = this.#pause;
    if (pause?.taker?.slot === slot) this.#continuePaused(pause);
    this.#options.tally.restarts += 1;
    slot.incarnation += 1;
    this.#spawn(slot);
    if (this.#calm) this.#send(slot, { type: 'calm' });
  }

  #onMessage(slot: Slot, message: ClientMessage): void {
    const { tally } = this.#options;
    switch (message.type) {
      case 'attempt':
        tally.attempts += 1;
        return;
      case 'failed':
        tally.failure(message.failure);
        if (message.failure === 'unexpected') {
          tally.problems.push(`payment ${message.paymentId}: unexpected ${message.message}`);
        }
        return;
      case 'fired':
        slot.armed = false;
        tally.fault(
          message.fault.kind === 'cut-commit'
            ? 'cut-commit'
            : `${message.fault.kind}:${message.fault.point}`,
        );
        return;
      case 'answered':
        this.#onAnswered(slot, message);
        return;
      case 'pausing':
        this.#onPausing(slot, message);
        return;
      case 'holding':
        this.#onHolding(slot, message.paymentId);
        return;
      case 'paused-attempt-ended':
        this.#onPausedEnded(slot, message.paymentId, message.outcome);
        return;
    }
  }

  #onAnswered(slot: Slot, message: Extract<ClientMessage, { type: 'answered' }>): void {
    const { tally, onProgress } = this.#options;
    tally.answers.push({ slot: slot.index, ...message });
    const pause = this.#pause;
    // The payment was finished by another attempt (the completer, say) before any took over.
    if (pause && !pause.taker && pause.payment.id === message.paymentId) {
      this.#continuePaused(pause);
    }
    if (!slot.outstanding.delete(message.paymentId)) return;
    this.#answered += 1;
    onProgress(this.#answered);
    if (this.unanswered().length === 0) this.#allAnswered?.();
  }

  #onPausing(slot: Slot, message: Extract<ClientMessage, { type: 'pausing' }>): void {
    slot.stopped = true;
    const payment = this.#payments.get(message.paymentId) as PaymentSpec;
    const pause: Pause = {
      payment,
      point: message.point,
      token: BigInt(message.token),
      paused: slot,
      continued: false,
      timer: setTimeout(() => {
        this.#options.tally.pausesWithoutTakeover += 1;
        this.#continuePaused(pause);
      }, TAKEOVER_TIMEOUT_MS),
    };
    this.#pause = pause;
    const takers = this.#slots.filter((s) => s !== slot && !s.stopped && !this.#exited(s));
    const taker = takers[message.paymentId % Math.max(1, takers.length)];
    if (!taker) return;
    // The taker's own attempt waits for the paused one's lease to run out, then takes over.
    this.#send(taker, {
      type: 'takeover',
      payment,
      point: message.point,
      afterToken: message.token,
    });
  }

  #onHolding(slot: Slot, paymentId: number): void {
    const pause = this.#pause;
    if (!pause || pause.payment.id !== paymentId || pause.continued) {
      this.#send(slot, { type: 'release-hold', paymentId });
      return;
    }
    this.#holdTaker(pause, {
      slot,
      release: () => this.#send(slot, { type: 'release-hold', paymentId }),
    });
  }

  /**
   * The completer's boundary hook: a completer attempt that takes a paused payment over holds at
   * the paused boundary as a client's would (resolves when it may go on).
   */
  holdIfTakingOver(
    boundary: string,
    attempt: { key: string; fencingToken: string },
  ): Promise<void> | undefined {
    const pause = this.#pause;
    if (
      !pause ||
      pause.taker ||
      pause.continued ||
      pause.payment.key !== attempt.key ||
      pause.point !== boundary ||
      BigInt(attempt.fencingToken) <= pause.token
    ) {
      return undefined;
    }
    return new Promise((release) => this.#holdTaker(pause, { release }));
  }

  /** A newer attempt holds: continue the paused one, and let the newer go on once it ended. */
  #holdTaker(pause: Pause, taker: NonNullable<Pause['taker']>): void {
    pause.taker = taker;
    this.#continuePaused(pause);
    clearTimeout(pause.timer);
    pause.timer = setTimeout(() => this.#endPause(pause), PAUSED_END_TIMEOUT_MS);
  }

  #onPausedEnded(slot: Slot, paymentId: number, outcome: string): void {
    const pause = this.#pause;
    this.#options.tally.pausedEnding(pause?.taker ? outcome : `${outcome} (not held)`);
    if (pause && pause.paused === slot && pause.payment.id === paymentId) this.#endPause(pause);
  }

  /** SIGCONT: the paused attempt goes on, past its lease. */
  #continuePaused(pause: Pause): void {
    if (pause.continued) return;
    pause.continued = true;
    pause.paused.stopped = false;
    if (!this.#exited(pause.paused)) pause.paused.child.kill('SIGCONT');
    if (!pause.taker) this.#endPause(pause);
  }

  #endPause(pause: Pause): void {
    clearTimeout(pause.timer);
    pause.taker?.release();
    if (this.#pause === pause) this.#pause = undefined;
  }

  #send(slot: Slot, message: RunnerMessage): void {
    if (slot.child.connected) slot.child.send(message, () => undefined);
  }

  #exited(slot: Slot): boolean {
    return slot.child.exitCode !== null || slot.child.signalCode !== null;
  }
}
