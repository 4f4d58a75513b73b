/**
 * What the chaos runner and its client processes say to each other over the IPC channel of
 * `fork()`, and the vocabulary both use for operations and faults.
 */

/** One logical operation: a client calls withIdempotency for this key until it gets an answer. */
export interface Operation {
  id: number;
  keyIndex: number;
}

/** Where a client process kills itself (SIGKILL) when the runner armed it. */
export type KillPoint = 'before-claim' | 'in-fn' | 'before-commit' | 'during-commit';

/**
 * How a client cuts its connection around COMMIT: `before-send` destroys the socket and then lets
 * COMMIT go (it never leaves: the server rolls back); `after-send` destroys it right after COMMIT
 * was written (the server commits, the client never hears). Either way the client only sees an
 * error and cannot know which happened.
 */
export type CutMode = 'before-send' | 'after-send';

/** A fault a client carries out on itself at the next opportunity. */
export type ArmedFault = { kind: 'kill'; point: KillPoint } | { kind: 'cut'; mode: CutMode };

/** Settings a client process starts with (its first command-line argument, as JSON). */
export interface ClientConfig {
  slot: number;
  incarnation: number;
  url: string;
  seed: number;
  scopes: number;
  /** Operations the client runs at once. */
  inFlight: number;
  /** Share of attempts, while faults are on, that use a connection with tiny timeouts. */
  tightShare: number;
  waitTimeoutMs: number;
}

/** Why an attempt failed, as a client classifies the error. */
export type FailureClass =
  | 'connection'
  | 'terminated'
  | 'statement-timeout'
  | 'lock-timeout'
  /** 409: the key was in flight and the attempt asked not to wait. */
  | 'conflict'
  /** 409: the wait for the transaction holding the key ran out. */
  | 'wait-timeout'
  | 'serialization'
  | 'unexpected';

export type RunnerMessage =
  | { type: 'work'; operations: Operation[] }
  | { type: 'arm'; fault: ArmedFault }
  /** The fault phase is over: disarm, and use only ordinary connections from now on. */
  | { type: 'calm' }
  | { type: 'exit' };

export type ClientMessage =
  | { type: 'attempt'; op: number; inCallerTransaction: boolean; optimistic: boolean }
  | { type: 'failed'; op: number; failure: FailureClass; message: string }
  | {
      type: 'answered';
      op: number;
      keyIndex: number;
      replayed: boolean;
      /** The response exactly as the client received it, serialised with JSON.stringify. */
      response: string;
    }
  /**
   * An armed fault fires at COMMIT; `token` identifies the execution whose commit it hits, so the
   * runner can later tell whether that commit went through. Sent before the fault strikes; a
   * client killing itself may die before the message leaves.
   */
  | { type: 'fired'; fault: ArmedFault; keyIndex: number; token: string | undefined }
  /** Every operation given to this process has its answer. */
  | { type: 'idle' };
