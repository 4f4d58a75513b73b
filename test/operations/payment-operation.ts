/**
 * The operation the tests run: create an order (a local step that writes a payments row), charge
 * the card through the fake provider (an external call with a downstream key), finish. Tests
 * steer it per key: provider faults for the next calls, and a pause inside the order's
 * transaction, to hold an attempt past its lease.
 */
import { sql } from 'kysely';
import { chargeCard, PaymentProviderError } from '../../examples/payment-provider/charge-card.ts';
import type { Fault } from '../../examples/payment-provider/fault.ts';
import {
  defineOperation,
  FinalResponse,
  type OperationContext,
} from '../../src/operations/index.ts';
import type { Database } from '../support/ledger-fixture.ts';

export interface PaymentRequest {
  amount_cents: number;
  customer: string;
}

export interface PaymentControls {
  providerUrl: string;
  /** Faults the provider injects into the next charge calls of a key, in order. */
  faults: Map<string, Fault[]>;
  /** Called inside the order's transaction, after its insert: may hold the attempt there. */
  insideOrder?: (key: string, fencingToken: string) => Promise<void>;
  /** How many times each key's order step body ran (committed or not). */
  orderRuns: Map<string, number>;
}

export function paymentOperation(controls: PaymentControls) {
  return defineOperation({
    name: 'create-payment',
    async run(op: OperationContext<Database>, request: PaymentRequest) {
      const order = await op.step('create-order', async (trx) => {
        controls.orderRuns.set(op.key, (controls.orderRuns.get(op.key) ?? 0) + 1);
        const row = await trx
          .insertInto('payments')
          .values({ scope: op.scope, key: op.key, amount: request.amount_cents })
          .returning('id')
          .executeTakeFirstOrThrow();
        await controls.insideOrder?.(op.key, op.fencingToken);
        return { orderId: String(row.id) };
      });
      const charge = await op.call(
        'charge',
        async ({ downstreamKey, signal }) => {
          const fault = controls.faults.get(op.key)?.shift();
          const outcome = await chargeCard(controls.providerUrl, {
            key: downstreamKey,
            amount_cents: request.amount_cents,
            currency: 'EUR',
            customer: request.customer,
            signal,
            timeoutMs: 2_000,
            ...(fault ? { fault } : {}),
          });
          if (outcome.kind === 'declined') {
            throw new FinalResponse({ status: 402, orderId: order.orderId, declined: true });
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
      return op.finish(async (trx) => {
        await sql`update payments set amount = amount where id = ${order.orderId}`.execute(trx);
        return { status: 201, orderId: order.orderId, chargeId: charge.chargeId };
      });
    },
  });
}

export type { Database };
