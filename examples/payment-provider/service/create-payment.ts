/**
 * The `create-payment` operation: an order row, a charge at the provider, the order marked paid.
 * Each part is a step the ledger records, so a retry (or the completer) resumes after the last
 * one that completed, and the charge is always sent with the same downstream key.
 */
import {
  defineOperation,
  type Operation,
  type OperationContext,
} from '../../../src/operations/index.ts';
import { chargeCard, PaymentProviderError } from '../charge-card.ts';
import type { Database } from './orders.ts';
import type { PaymentRequest } from './payment-request.ts';

/** What the operation answers, stored and replayed as is: a status and a JSON body. */
export interface PaymentResponse {
  status: 201 | 402;
  /** `application/json` for a 201, `application/problem+json` (RFC 9457) for a 402. */
  contentType: string;
  body: Record<string, unknown>;
}

export interface CreatePaymentOptions {
  providerUrl: string;
  /** How long a charge call may take before it counts as `unknown` (may have been made). */
  chargeTimeoutMs: number;
}

/**
 * Declares `create-payment` for the provider at `providerUrl`. The operation's name is stored
 * with each instance: the completer finds the code to resume an abandoned one by it.
 *
 * @example
 * ```ts
 * const createPayment = createPaymentOperation({ providerUrl, chargeTimeoutMs: 5_000 });
 * const { response } = await runOperation(db, createPayment, { scope, key, request });
 * ```
 */
export function createPaymentOperation(
  options: CreatePaymentOptions,
): Operation<Database, PaymentRequest, PaymentResponse> {
  return defineOperation({
    name: 'create-payment',
    async run(op: OperationContext<Database>, request: PaymentRequest): Promise<PaymentResponse> {
      // Committed with its step record: a resumed attempt skips it and gets the same order id.
      const order = await op.step('create-order', async (trx) => {
        const row = await trx
          .insertInto('orders')
          .values(request)
          .returning('id')
          .executeTakeFirstOrThrow();
        return { id: row.id };
      });

      const charge = await op.call(
        'charge',
        async ({ downstreamKey, signal }) => {
          const outcome = await chargeCard(options.providerUrl, {
            ...request,
            // The same on every attempt: the provider charges once however often this runs.
            key: downstreamKey,
            // Aborted when this attempt loses its lease to a newer one.
            signal,
            timeoutMs: options.chargeTimeoutMs,
          });
          // A decline is a final answer, not a failure: recorded like a charge, so that finish
          // marks the order declined in the same transaction as the 402 it answers.
          return { id: outcome.charge.id, declined: outcome.kind === 'declined' };
        },
        // 'retryable': surely not charged (connection refused, 409). Anything else may have
        // been, including a 5xx: the retry sends the same downstream key, which replays it.
        {
          classify: (error) =>
            error instanceof PaymentProviderError && error.kind === 'retryable'
              ? 'retryable'
              : 'unknown',
        },
      );

      return op.finish(async (trx): Promise<PaymentResponse> => {
        const settled = await trx
          .updateTable('orders')
          .set({ state: charge.declined ? 'declined' : 'paid', charge_id: charge.id })
          .where('id', '=', order.id)
          .returning(['id', 'amount_cents', 'currency', 'customer', 'state', 'charge_id'])
          .executeTakeFirstOrThrow();
        if (!charge.declined)
          return { status: 201, contentType: 'application/json', body: settled };
        return {
          status: 402,
          contentType: 'application/problem+json',
          body: {
            type: '/problems/card-declined',
            title: 'Card declined',
            status: 402,
            detail: 'The card was declined. Use another card, with a new Idempotency-Key.',
            order_id: order.id,
            charge_id: charge.id,
          },
        };
      });
    },
  });
}
