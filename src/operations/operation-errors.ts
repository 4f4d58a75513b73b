import { IdempotencyError } from '../index.ts';

/**
 * This attempt no longer holds the operation: its lease ran out and another attempt (a client's
 * retry, the completer) took it over, with a higher fencing token. Whatever this attempt was
 * committing rolled back; the new holder carries on from the last recorded step (HTTP 409).
 */
export class OperationLeaseLostError extends IdempotencyError {
  constructor(options: { scope: string; key: string }) {
    super({
      ...options,
      code: 'lease_lost',
      status: 409,
      message:
        "This attempt lost the operation's lease to a newer attempt; nothing it was committing " +
        'was committed, and the newer attempt carries on',
    });
  }
}

/** Whether a failed external call may have taken effect. */
export type PendingReason = 'retryable' | 'unknown';

/**
 * An external call failed without a final answer: it surely did not happen (`'retryable'`, e.g.
 * a refused connection) or may have (`'unknown'`, e.g. a timeout or a 5xx after the request was
 * sent). Either way the operation stays in progress, its lease is released at once, and a retry
 * resumes it, calling again with the same downstream key (HTTP 503, with `retryAfterMs`).
 */
export class OperationPendingError extends IdempotencyError {
  readonly reason: PendingReason;
  /** The step whose call failed. */
  readonly step: string;
  /** A suggested delay before the client retries, for a `Retry-After` header. */
  readonly retryAfterMs: number;

  constructor(options: {
    scope: string;
    key: string;
    step: string;
    reason: PendingReason;
    cause: unknown;
    retryAfterMs?: number;
  }) {
    const { step, reason, retryAfterMs = 1000, ...rest } = options;
    super({
      ...rest,
      code: 'operation_pending',
      status: 503,
      message:
        reason === 'retryable'
          ? 'An external call of this operation failed before it took effect; retry to resume it'
          : 'An external call of this operation may or may not have taken effect; retry to ' +
            'resume it with the same downstream key',
    });
    this.reason = reason;
    this.step = step;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Thrown from a step to end the operation with a final response (a declined card): it is
 * recorded as the operation's response and replayed to every retry, instead of being retried.
 *
 * @example
 * ```ts
 * await op.call('charge', async ({ downstreamKey }) => {
 *   const result = await provider.charge({ idempotencyKey: downstreamKey, amount });
 *   if (result.declined) throw new FinalResponse({ status: 402, body: { error: 'card_declined' } });
 *   return result.charge;
 * });
 * ```
 */
export class FinalResponse<T = unknown> {
  readonly response: T;

  constructor(response: T) {
    this.response = response;
  }
}
