import type { Transaction } from 'kysely';
import type { Jsonified } from '../index.ts';
import type { PendingReason } from './operation-errors.ts';

/** What a step or the final transaction may return: a JSON value, or nothing. */
export type Recordable = unknown;

/** How to tell, from a failed external call's error, whether the call may have taken effect. */
export type ClassifyFailure = (error: unknown) => PendingReason;

/**
 * What an operation's `run` is given: the steps it is made of, and what it knows of its attempt.
 */
export interface OperationContext<DB> {
  readonly scope: string;
  readonly key: string;
  /** This attempt's fencing token (a decimal bigint); larger than every earlier attempt's. */
  readonly fencingToken: string;
  /** True when an earlier attempt started the operation: recorded steps are skipped. */
  readonly resumed: boolean;
  /** Aborted when this attempt loses its lease: pass it to external calls. */
  readonly signal: AbortSignal;
  /**
   * Local database work, in one transaction of its own that also records the step (fenced). A
   * resumed attempt skips a recorded step and gets its recorded result. A {@link FinalResponse}
   * thrown by `fn` rolls its writes back and ends the operation with that response.
   */
  step<T extends Recordable>(
    name: string,
    fn: (trx: Transaction<DB>) => Promise<T>,
  ): Promise<Jsonified<T>>;
  /**
   * An external call (a payment provider), given a downstream key that is the same on every
   * attempt. Its result is recorded (fenced) once it returns. If it throws: a
   * {@link FinalResponse} ends the operation with that response; any other error leaves the
   * operation resumable (`classify` says whether the call may have happened; default
   * `'unknown'`) and is reported as an `OperationPendingError`, unless this attempt lost its
   * lease meanwhile (the call's `signal` aborted): that is an `OperationLeaseLostError`.
   */
  call<T extends Recordable>(
    name: string,
    fn: (call: { downstreamKey: string; signal: AbortSignal }) => Promise<T>,
    options?: { classify?: ClassifyFailure },
  ): Promise<Jsonified<T>>;
  /**
   * The final transaction: its business writes commit with the operation's response (fenced).
   * Return what it returns from `run`.
   */
  finish<T extends Recordable>(fn: (trx: Transaction<DB>) => Promise<T>): Promise<Jsonified<T>>;
}

/** An operation's code, registered under its name (see {@link defineOperation}). */
export interface Operation<DB, Req, Res> {
  readonly name: string;
  readonly run: (op: OperationContext<DB>, request: Req) => Promise<Res>;
}

// A registered symbol, not a WeakSet of the operations made here: an application that loads the
// package as CommonJS and a tool that loads it as ESM (the command line) hold two copies of this
// module, and must still recognise each other's operations.
const OPERATION = Symbol.for('idempotency-ledger.operation');

/**
 * Declares an operation: a name (stored with each instance, so that the code that resumes an
 * abandoned one can be found) and the code, a sequence of steps.
 *
 * @example
 * ```ts
 * const createPayment = defineOperation({
 *   name: 'create-payment',
 *   async run(op, request: { amount_cents: number }) {
 *     const order = await op.step('create-order', (trx) => insertOrder(trx, request));
 *     const charge = await op.call('charge', ({ downstreamKey, signal }) =>
 *       chargeCard(provider, { key: downstreamKey, amount_cents: request.amount_cents, signal }),
 *     );
 *     return op.finish((trx) => markPaid(trx, order.id, charge.id));
 *   },
 * });
 * ```
 */
export function defineOperation<DB, Req, Res>(definition: {
  name: string;
  run: (op: OperationContext<DB>, request: Req) => Promise<Res>;
}): Operation<DB, Req, Res> {
  return Object.freeze({ name: definition.name, run: definition.run, [OPERATION]: true });
}

/**
 * Whether `value` is an operation made by {@link defineOperation}, by any copy of this package
 * (its ESM or its CommonJS build): how a tool finds the operations among a module's exports.
 *
 * @example
 * ```ts
 * const operations = Object.values(await import('./operations.ts')).filter(isOperation);
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: an operation of any database and request type
export function isOperation(value: unknown): value is Operation<any, any, any> {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, OPERATION);
}
