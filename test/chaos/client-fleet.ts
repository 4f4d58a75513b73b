/**
 * The runner's side of the client processes: starts one per slot, hands it the slot's operations
 * that have no answer yet, collects its reports, arms it with faults, and starts a new process
 * with the same remaining work whenever one is killed.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Prng } from './prng.ts';
import type {
  ArmedFault,
  ClientConfig,
  ClientMessage,
  Operation,
  RunnerMessage,
} from './protocol.ts';
import type { RunTally } from './run-tally.ts';

const CLIENT_SCRIPT = fileURLToPath(new URL('./client-main.ts', import.meta.url));
/** How long stop() gives the clients to exit by themselves before killing them. */
const EXIT_GRACE_MS = 10_000;
/** A slot whose processes keep crashing by themselves is not restarted again (a harness bug). */
const MAX_CRASHES = 3;

/** What every client gets (see ClientConfig), and what the fleet needs itself. */
export interface FleetOptions
  extends Pick<
    ClientConfig,
    'url' | 'seed' | 'scopes' | 'inFlight' | 'tightShare' | 'waitTimeoutMs'
  > {
  /** The operations of each slot, in the order it runs them. */
  perClient: Operation[][];
  tally: RunTally;
  /** Called with the number of operations answered so far, after each new answer. */
  onProgress(answered: number): void;
}

interface Slot {
  index: number;
  incarnation: number;
  child: ChildProcess | undefined;
  /** Resolves once the current process has exited and its IPC channel is drained. */
  gone: Promise<void>;
  /** Operations without an answer yet, in their original order. */
  pending: Map<number, Operation>;
  armed: ArmedFault | undefined;
  stderr: string;
  /** Exits nobody caused. */
  crashes: number;
}

export class ClientFleet {
  readonly #options: FleetOptions;
  readonly #slots: Slot[];
  readonly #total: number;
  #answered = 0;
  #stopping = false;
  /** Operations that met an error no correct run produces. */
  readonly #unexpected = new Set<number>();
  readonly #allAnswered: Promise<void>;
  #resolveAllAnswered!: () => void;

  constructor(options: FleetOptions) {
    this.#options = options;
    this.#slots = options.perClient.map((operations, index) => ({
      index,
      incarnation: 0,
      child: undefined,
      gone: Promise.resolve(),
      pending: new Map(operations.map((operation) => [operation.id, operation])),
      armed: undefined,
      stderr: '',
      crashes: 0,
    }));
    this.#total = options.perClient.reduce((sum, operations) => sum + operations.length, 0);
    this.#allAnswered = new Promise((resolve) => {
      this.#resolveAllAnswered = resolve;
    });
    if (this.#total === 0) this.#resolveAllAnswered();
  }

  start(): void {
    for (const slot of this.#slots) if (slot.pending.size > 0) this.#spawn(slot);
  }

  /** Resolves when every operation has its answer. */
  whenAllAnswered(): Promise<void> {
    return this.#allAnswered;
  }

  /** Operations still without an answer. */
  unanswered(): Operation[] {
    return this.#slots.flatMap((slot) => [...slot.pending.values()]);
  }

  /** Slots that can take a fault now: a live process with work left and nothing armed. */
  armable(): number[] {
    return this.#slots
      .filter((slot) => slot.child?.connected && slot.pending.size > 0 && !slot.armed)
      .map((slot) => slot.index);
  }

  arm(index: number, fault: ArmedFault): void {
    const slot = this.#slots[index];
    if (!slot?.child) return;
    slot.armed = fault;
    this.#options.tally.armed++;
    send(slot.child, { type: 'arm', fault });
  }

  /** Ends the fault phase: clients disarm and drop their tight timeouts. */
  calm(): void {
    for (const slot of this.#slots) if (slot.child) send(slot.child, { type: 'calm' });
  }

  /** Asks every client to exit; kills those that do not. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const slot of this.#slots) if (slot.child) send(slot.child, { type: 'exit' });
    const allGone = Promise.all(this.#slots.map((slot) => slot.gone));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), EXIT_GRACE_MS);
    });
    if ((await Promise.race([allGone, grace])) === 'late') {
      for (const slot of this.#slots) slot.child?.kill('SIGKILL');
      await allGone;
    }
    clearTimeout(timer);
  }

  #spawn(slot: Slot): void {
    slot.incarnation++;
    const config: ClientConfig = {
      slot: slot.index,
      incarnation: slot.incarnation,
      url: this.#options.url,
      seed: new Prng(this.#options.seed).derive(slot.index, slot.incarnation).int(1, 2 ** 31),
      scopes: this.#options.scopes,
      inFlight: this.#options.inFlight,
      tightShare: this.#options.tightShare,
      waitTimeoutMs: this.#options.waitTimeoutMs,
    };
    const child = fork(CLIENT_SCRIPT, [JSON.stringify(config)], {
      execPath: process.execPath,
      // Not our own flags (a test runner's loaders); Node 22 before 22.18 needs this one.
      execArgv: process.features.typescript ? [] : ['--experimental-strip-types'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    slot.child = child;
    slot.armed = undefined;
    slot.stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      slot.stderr = (slot.stderr + chunk).slice(-2_000);
    });
    child.on('message', (message: ClientMessage) => this.#onMessage(slot, message));
    child.on('error', (error) => this.#options.tally.problems.push(`client: ${error.message}`));
    // Messages the process wrote before dying are still in the channel when 'exit' fires; they
    // have all been read once it disconnects.
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    );
    const disconnected = new Promise<void>((resolve) => child.once('disconnect', resolve));
    slot.gone = Promise.all([exited, disconnected]).then(([[code, signal]]) =>
      this.#onGone(slot, child, code, signal),
    );
    send(child, { type: 'work', operations: [...slot.pending.values()] });
  }

  #onGone(slot: Slot, child: ChildProcess, code: number | null, signal: string | null): void {
    if (slot.child !== child) return;
    const armed = slot.armed;
    slot.child = undefined;
    slot.armed = undefined;
    const tally = this.#options.tally;
    if (signal === 'SIGKILL' && armed?.kind === 'kill') {
      tally.fault(`kill:${armed.point}`);
    } else if (!(this.#stopping && (code === 0 || signal === 'SIGKILL'))) {
      slot.crashes++;
      const name = `client ${slot.index}.${slot.incarnation}`;
      tally.problems.push(
        `${name} exited unexpectedly (code ${code}, signal ${signal})${slot.stderr ? `: ${slot.stderr.trim()}` : ''}`,
      );
    }
    if (!this.#stopping && slot.pending.size > 0 && slot.crashes < MAX_CRASHES) this.#spawn(slot);
  }

  #onMessage(slot: Slot, message: ClientMessage): void {
    const tally = this.#options.tally;
    switch (message.type) {
      case 'attempt':
        tally.attempts++;
        if (message.inCallerTransaction) tally.callerTransactionAttempts++;
        if (message.optimistic) tally.optimisticAttempts++;
        break;
      case 'failed':
        tally.failure(message.failure, message.message);
        // Once per operation: it keeps being retried, and would keep failing the same way.
        if (message.failure === 'unexpected' && !this.#unexpected.has(message.op)) {
          this.#unexpected.add(message.op);
          tally.problems.push(`unexpected error on operation ${message.op}: ${message.message}`);
        }
        break;
      case 'answered':
        tally.answers.push({
          keyIndex: message.keyIndex,
          replayed: message.replayed,
          response: message.response,
        });
        if (slot.pending.delete(message.op)) {
          this.#answered++;
          this.#options.onProgress(this.#answered);
          if (this.#answered === this.#total) this.#resolveAllAnswered();
        }
        break;
      case 'fired':
        if (message.fault.kind === 'cut') {
          tally.fault(`cut:${message.fault.mode}`);
          slot.armed = undefined;
        }
        if (message.token !== undefined) {
          tally.commitFaults.push({
            fault: message.fault,
            keyIndex: message.keyIndex,
            token: message.token,
          });
        }
        break;
      case 'idle':
        break;
    }
  }
}

function send(child: ChildProcess, message: RunnerMessage): void {
  // A process that just died cannot hear it; its replacement starts from scratch anyway.
  if (child.connected) child.send(message, () => undefined);
}
