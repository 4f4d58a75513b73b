/** What the runner and its client processes say to each other (over the fork() IPC channel). */

/** One payment: the client sends it until it gets an answer. */
export interface PaymentSpec {
  id: number;
  scope: string;
  key: string;
  request: { amount_cents: number; customer: string };
}

/** Where an attempt stands: the boundaries of the payment operation's steps. */
export const BOUNDARIES = [
  'before-order', // run started, nothing done by this attempt
  'in-order', // inside the order's transaction, its row written, not yet recorded
  'after-order', // the order step committed
  'after-charge', // the provider answered, the charge not yet recorded
  'after-charge-recorded', // the charge step recorded
  'in-finish', // inside the final transaction, the payment row written, not yet finished
  'after-finish', // the final transaction committed, the answer not yet reported
] as const;
export type Boundary = (typeof BOUNDARIES)[number];

/** The boundaries where a paused attempt has a write in hand that fencing must refuse. */
export const PAUSE_POINTS = ['in-order', 'after-charge', 'in-finish'] as const;
export type PausePoint = (typeof PAUSE_POINTS)[number];

/** A fault a client process carries out on itself at the next attempt that reaches its point. */
export type ClientFault =
  | { kind: 'kill'; point: Boundary }
  | { kind: 'pause'; point: PausePoint }
  | { kind: 'cut-commit' };

/** Runner to client. */
export type RunnerMessage =
  | { type: 'work'; payments: PaymentSpec[] }
  | { type: 'arm'; fault: ClientFault }
  /** Send `payment` too, and hold the newer attempt at `point` until told to go on. */
  | { type: 'takeover'; payment: PaymentSpec; point: PausePoint; afterToken: string }
  | { type: 'release-hold'; paymentId: number }
  | { type: 'calm' }
  | { type: 'exit' };

/** How an attempt failed, as the client saw it. */
export type FailureClass =
  | 'pending' // OperationPendingError: a provider call without a final answer
  | 'lease-lost' // OperationLeaseLostError: fenced off
  | 'conflict' // IdempotencyConflictError: held by another attempt
  | 'database' // a connection cut, a terminated backend, a failed commit
  | 'unexpected'; // anything else: a bug

/** Client to runner. */
export type ClientMessage =
  | { type: 'attempt'; paymentId: number }
  | {
      type: 'answered';
      paymentId: number;
      response: string;
      replayed: boolean;
      resumed: boolean;
    }
  | { type: 'failed'; paymentId: number; failure: FailureClass; message: string }
  | { type: 'fired'; fault: ClientFault }
  | { type: 'pausing'; paymentId: number; point: PausePoint; token: string }
  | { type: 'holding'; paymentId: number; token: string }
  | { type: 'paused-attempt-ended'; paymentId: number; outcome: FailureClass | 'answered' };

/** A client process's settings: its first argument, as JSON. */
export interface ClientConfig {
  slot: number;
  incarnation: number;
  url: string;
  providerUrl: string;
  libraryDir: string;
  seed: number;
  inFlight: number;
  leaseMs: number;
}
