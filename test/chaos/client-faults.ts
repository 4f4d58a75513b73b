/**
 * The faults a client process carries out on itself: SIGKILL at a chosen point of an execution,
 * or its connection cut around COMMIT. The runner arms one; it strikes at the next attempt that
 * reaches its point, whichever of the process's operations that is, as a real crash would.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Socket } from 'node:net';
import type { ArmedFault, ClientMessage } from './protocol.ts';

/** What a fault needs to know about the attempt whose query it intercepts. */
export interface AttemptState {
  keyIndex: number;
  /** The token fn chose in the current transaction; undefined until fn runs (a replay). */
  token: string | undefined;
}

// pg's Client keeps its socket here; the typings do not expose it.
type WithSocket = { connection: { stream: Socket } };

export class ClientFaults {
  /** The armed fault, until it strikes or the runner calls the faults off. */
  armed: ArmedFault | undefined;
  /** The attempt each query belongs to: queries run inside `attempts.run(state, ...)`. */
  readonly attempts = new AsyncLocalStorage<AttemptState>();
  readonly #report: (message: ClientMessage) => void;

  constructor(report: (message: ClientMessage) => void) {
    this.#report = report;
  }

  /**
   * Sees every query a connection is about to send, with `send` sending it. Strikes when the armed
   * fault's moment has come; otherwise just sends.
   */
  intercept<R>(text: string, client: unknown, send: () => R): R {
    const attempt = this.attempts.getStore();
    // The library may run its transaction again (40001): a new transaction has not run fn yet.
    if (attempt && /^(begin|start transaction)/.test(text)) attempt.token = undefined;
    const fault = this.armed;
    if (!fault || !attempt) return send();
    if (fault.kind === 'kill' && fault.point === 'before-claim' && text.includes('claim_key')) {
      this.#die(fault, attempt);
    }
    // Only the COMMIT of an execution: cutting a replay's COMMIT risks nothing.
    if (text !== 'commit' || attempt.token === undefined) return send();
    if (fault.kind === 'kill') {
      if (fault.point === 'before-commit') this.#die(fault, attempt);
      if (fault.point !== 'during-commit') return send();
      this.#fire(fault, attempt);
      const reply = send();
      // COMMIT is in the socket's kernel buffer now; die before its answer can arrive.
      process.nextTick(() => process.kill(process.pid, 'SIGKILL'));
      return reply;
    }
    this.armed = undefined;
    this.#fire(fault, attempt);
    const socket = (client as WithSocket).connection.stream;
    if (fault.mode === 'before-send') {
      socket.destroy();
      return send();
    }
    const reply = send();
    socket.destroy();
    return reply;
  }

  /** Called inside fn once the business row is written, before fn's second statement. */
  insideFn(attempt: AttemptState): void {
    if (this.armed?.kind === 'kill' && this.armed.point === 'in-fn') this.#die(this.armed, attempt);
  }

  #fire(fault: ArmedFault, attempt: AttemptState): void {
    this.#report({ type: 'fired', fault, keyIndex: attempt.keyIndex, token: attempt.token });
  }

  #die(fault: ArmedFault, attempt: AttemptState): never {
    this.#fire(fault, attempt);
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL to oneself lands before kill() returns; this line is never reached.
    throw new Error('unreachable: SIGKILL did not kill the process');
  }
}
