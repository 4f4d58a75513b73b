import type { Kysely } from 'kysely';
import { withIdempotency } from '../../src/index.ts';
import { enqueueMessage } from '../../src/outbox/index.ts';
import type { Database } from './schema.ts';

/** What a client sends to place an order: its own id for it, and the amount to charge. */
export interface PlaceOrder {
  orderId: string;
  customer: string;
  amount: number;
}

/** The `order.placed` message: what the payments service charges. */
export interface OrderPlaced {
  orderId: string;
  amount: number;
}

/**
 * POST /orders, as a handler would do it: the order row, the ledger entry of the client's
 * idempotency key and the `order.placed` message commit in one transaction, or none of them do.
 * A client retry replays the first response; the message was enqueued once, by the first.
 *
 * The message goes to the customer's stream: the relay publishes one customer's messages in the
 * order their transactions committed.
 */
export async function placeOrder(db: Kysely<Database>, idempotencyKey: string, order: PlaceOrder) {
  return withIdempotency(
    db,
    { scope: 'orders:place', key: idempotencyKey, request: order },
    async (trx) => {
      await trx
        .insertInto('orders')
        .values({ id: order.orderId, customer: order.customer, amount: order.amount })
        .execute();
      const payload: OrderPlaced = { orderId: order.orderId, amount: order.amount };
      const { messageId } = await enqueueMessage(trx, {
        stream: `customer:${order.customer}`,
        topic: 'order.placed',
        payload,
      });
      return { status: 201, orderId: order.orderId, messageId };
    },
  );
}
