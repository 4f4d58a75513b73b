/**
 * The operation every chaos client (and the runner's completer) runs: write an order (a local
 * step), charge the card through the fake provider with the downstream key (an external call; a
 * decline ends the operation with a 402), then write the payment with the response (the final
 * transaction). Business rows carry the fencing token they were written with, for the audit in
 * ops-chaos-schema.ts. `at` is called at each boundary: the client's faults strike there.
 */
import { sql } from 'kysely';
import { chargeCard, PaymentProviderError } from '../../examples/payment-provider/charge-card.ts';
import type { OperationsLibrary } from './operations-library.ts';
import type { Boundary, PaymentSpec } from './ops-chaos-protocol.ts';

/** The provider's answer may take this long; longer is `unknown` (a `timeout` fault). */
const CHARGE_TIMEOUT_MS = 400;

export interface PaymentAttempt {
  scope: string;
  key: string;
  fencingToken: string;
  resumed: boolean;
}

export type BoundaryHook = (boundary: Boundary, attempt: PaymentAttempt) => Promise<void> | void;

export type PaymentResponse =
  | { status: 201; orderId: string; chargeId: string }
  | { status: 402; orderId: string; declineCode: string };

export function chaosPaymentOperation(
  library: OperationsLibrary,
  providerUrl: string,
  at: BoundaryHook,
) {
  const { defineOperation, FinalResponse } = library.operations;
  return defineOperation({
    name: 'chaos-payment',
    async run(op, request: PaymentSpec['request']): Promise<PaymentResponse> {
      const attempt = () => ({
        scope: op.scope,
        key: op.key,
        fencingToken: op.fencingToken,
        resumed: op.resumed,
      });
      await at('before-order', attempt());
      const order = await op.step('create-order', async (trx) => {
        const { rows } = await sql<{ id: string }>`
          insert into orders (scope, key, amount_cents, fencing_token, pid)
          values (${op.scope}, ${op.key}, ${request.amount_cents}, ${op.fencingToken}::bigint,
                  ${process.pid})
          returning id::text as id`.execute(trx);
        await at('in-order', attempt());
        return { orderId: (rows[0] as { id: string }).id };
      });
      await at('after-order', attempt());
      const charge = await op.call(
        'charge',
        async ({ downstreamKey, signal }) => {
          const outcome = await chargeCard(providerUrl, {
            key: downstreamKey,
            amount_cents: request.amount_cents,
            currency: 'EUR',
            customer: request.customer,
            signal,
            timeoutMs: CHARGE_TIMEOUT_MS,
          });
          await at('after-charge', attempt());
          if (outcome.kind === 'declined') {
            throw new FinalResponse({
              status: 402,
              orderId: order.orderId,
              declineCode: 'card_declined',
            });
          }
          return { chargeId: outcome.charge.id };
        },
        {
          classify: (error) =>
            error instanceof PaymentProviderError && error.kind === 'retryable'
              ? 'retryable'
              : 'unknown',
        },
      );
      await at('after-charge-recorded', attempt());
      return op.finish(async (trx) => {
        await sql`
          insert into payments (scope, key, order_id, charge_id, fencing_token, pid)
          values (${op.scope}, ${op.key}, ${order.orderId}::bigint, ${charge.chargeId},
                  ${op.fencingToken}::bigint, ${process.pid})`.execute(trx);
        await at('in-finish', attempt());
        return { status: 201 as const, orderId: order.orderId, chargeId: charge.chargeId };
      });
    },
  });
}
