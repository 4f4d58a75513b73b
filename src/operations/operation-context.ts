import type { Kysely, Transaction } from 'kysely';
import {
  InvalidIdempotencyOptionsError,
  type ResponseEncryption,
  sealStoredJson,
  UnstorableResponseError,
} from '../index.ts';
import type { ClassifyFailure, OperationContext } from './define-operation.ts';
import { downstreamKey } from './downstream-key.ts';
import {
  FinalResponse,
  OperationLeaseLostError,
  OperationPendingError,
} from './operation-errors.ts';
import { finishOperation, type OperationRef, recordStep } from './operation-store.ts';

/** Thrown through the user's `run` once the operation has finished (by a FinalResponse). */
export class OperationFinished {
  readonly json: string | null;

  constructor(json: string | null) {
    this.json = json;
  }
}

/** What one attempt knows: where the operation is, its token, and the steps already recorded. */
export interface Attempt<DB> {
  db: Kysely<DB>;
  ref: OperationRef;
  fencingToken: string;
  resumed: boolean;
  /** The recorded steps' results, in clear. */
  recorded: Map<string, string | null>;
  /** Seals what the attempt stores (step results, the final response), when given. */
  encryption?: ResponseEncryption | undefined;
  /** Aborted once this attempt has lost its lease, by the heartbeat or by a refused record. */
  lease: AbortController;
}

/**
 * The context `run` is given. Keeps what it has done: the steps it ran (a name used twice is a
 * mistake), and the final response once `finish` committed it.
 */
export function createOperationContext<DB>(attempt: Attempt<DB>): OperationContext<DB> & {
  finished(): { json: string | null } | undefined;
} {
  const { db, ref, fencingToken, recorded } = attempt;
  const { signal } = attempt.lease;
  const used = new Set<string>();
  let finished: { json: string | null } | undefined;
  // A refused record is as sure a sign of a lost lease as the heartbeat's: abort the attempt, so
  // that `run` code that carries on past the error runs no further step, and calls in flight
  // (given the signal) stop.
  const lost = () => {
    const error = new OperationLeaseLostError({ scope: ref.scope, key: ref.key });
    if (!signal.aborted) attempt.lease.abort(error);
    return error;
  };

  const begin = (name: string) => {
    if (typeof name !== 'string' || name.length === 0 || name.length > 255) {
      throw new InvalidIdempotencyOptionsError({
        message: 'A step name must be a string of 1 to 255 characters',
        issues: ['step: must be a string of 1 to 255 characters'],
      });
    }
    if (used.has(name)) {
      throw new InvalidIdempotencyOptionsError({
        message: 'Two steps of one operation have the same name',
        issues: ['step: names must be unique within an operation'],
      });
    }
    if (finished) {
      throw new InvalidIdempotencyOptionsError({
        message: 'The operation has finished: no step can follow finish()',
        issues: ['step: after finish()'],
      });
    }
    used.add(name);
  };
  const encode = (value: unknown): string | null => {
    if (value === undefined) return null;
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json;
    } catch (error) {
      throw unstorable(error);
    }
    throw unstorable(undefined);
  };
  const unstorable = (cause: unknown) =>
    new UnstorableResponseError({
      scope: ref.scope,
      key: ref.key,
      reason: 'not_json',
      message: 'A step result or response of this operation cannot be stored as JSON',
      cause,
    });
  const decode = <T>(json: string | null) => (json === null ? undefined : JSON.parse(json)) as T;
  // What is stored: the JSON text, sealed for its place when the attempt has encryption. The
  // attempt itself goes on with the text in clear.
  const sealedStep = (json: string | null, step: string) =>
    sealStoredJson(json, attempt.encryption, { ...ref, kind: 'operation_step', step });
  const sealedResponse = (json: string | null) =>
    sealStoredJson(json, attempt.encryption, { ...ref, kind: 'operation_response' });

  const context: OperationContext<DB> & { finished(): { json: string | null } | undefined } = {
    scope: ref.scope,
    key: ref.key,
    fencingToken,
    resumed: attempt.resumed,
    signal,
    finished: () => finished,

    async step(name, fn) {
      begin(name);
      if (recorded.has(name)) return decode(recorded.get(name) ?? null);
      if (signal.aborted) throw lost();
      try {
        const json = await db.transaction().execute(async (trx) => {
          const value = encode(await fn(trx as Transaction<DB>));
          if (!(await recordStep(trx, ref, fencingToken, name, sealedStep(value, name)))) {
            throw lost();
          }
          return value;
        });
        return decode(json);
      } catch (error) {
        // As from a call: the operation ends with that response (the step's writes rolled back).
        if (error instanceof FinalResponse) return end(error);
        // The lease is released by runOperation once the error leaves `run`, after the heartbeat
        // has stopped; `run` code that catches it and carries on keeps the operation.
        throw error;
      }
    },

    async call(name, fn, options: { classify?: ClassifyFailure } = {}) {
      begin(name);
      if (recorded.has(name)) return decode(recorded.get(name) ?? null);
      if (signal.aborted) throw lost();
      let value: unknown;
      try {
        value = await fn({
          downstreamKey: downstreamKey(ref.scope, ref.key, name),
          signal,
        });
      } catch (error) {
        if (error instanceof FinalResponse) return end(error);
        // Cut off because this attempt lost its lease: the call did not fail on its own, and the
        // newer holder carries the operation on. Say so (409, as a refused record would), rather
        // than a pending call (503); there is no lease of this attempt's left to release.
        if (signal.aborted) throw lost();
        const reason = options.classify ? options.classify(error) : 'unknown';
        throw new OperationPendingError({
          scope: ref.scope,
          key: ref.key,
          step: name,
          reason,
          cause: error,
        });
      }
      const json = encode(value);
      if (!(await recordStep(db, ref, fencingToken, name, sealedStep(json, name)))) throw lost();
      return decode(json);
    },

    async finish(fn) {
      if (finished) {
        throw new InvalidIdempotencyOptionsError({
          message: 'finish() was called twice',
          issues: ['finish: once per operation'],
        });
      }
      if (signal.aborted) throw lost();
      const json = await db.transaction().execute(async (trx) => {
        const value = encode(await fn(trx as Transaction<DB>));
        if (!(await finishOperation(trx, ref, fencingToken, sealedResponse(value)))) throw lost();
        return value;
      });
      finished = { json };
      return decode(json);
    },
  };

  // Records a FinalResponse as the operation's response (fenced), and ends `run` with it.
  async function end(final: FinalResponse): Promise<never> {
    const json = encode(final.response);
    if (!(await finishOperation(db, ref, fencingToken, sealedResponse(json)))) throw lost();
    finished = { json };
    throw new OperationFinished(json);
  }
  return context;
}
