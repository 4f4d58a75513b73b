/**
 * The checks after a run, against the database, the provider's own records, and every answer a
 * client got:
 * - each payment charged at most once by the provider (counted per customer: one per payment, so
 *   that a second downstream key for one payment would show), and exactly once when finished;
 * - the business rows match the finished operations: one order each, one payment row for each
 *   201 and none for a 402, its charge the provider's;
 * - every answer a client got is the stored final response, byte for byte (as JSON text);
 * - no operation left in progress once the completer has drained;
 * - no write of a fenced-off holder committed (the audit of ops-chaos-schema.ts is empty).
 */
import { type Kysely, sql } from 'kysely';
import type { Charge } from '../../examples/payment-provider/charge-request.ts';
import type { PaymentSpec } from './ops-chaos-protocol.ts';
import type { Answer } from './ops-chaos-tally.ts';

export interface OpsVerdict {
  violations: string[];
  finished: { created: number; declined: number };
  inProgress: number;
  charges: number;
  answersCompared: number;
  businessRows: { orders: number; payments: number };
  fencedWritesCommitted: number;
}

interface OperationRow {
  key: string;
  state: string;
  response: string | null;
  fencing_token: string;
}

export async function checkOpsInvariants(
  db: Kysely<unknown>,
  schema: string,
  input: { payments: PaymentSpec[]; answers: Answer[]; charges: Charge[] },
): Promise<OpsVerdict> {
  const violations: string[] = [];
  const { rows: operations } = await sql<OperationRow>`
    select key, state, response::text as response, fencing_token::text as fencing_token
      from ${sql.id(schema, 'operations')}`.execute(db);
  const { rows: orders } = await sql<{ key: string; id: string; fencing_token: string }>`
    select key, id::text as id, fencing_token::text as fencing_token from orders`.execute(db);
  const { rows: payments } = await sql<{
    key: string;
    order_id: string;
    charge_id: string;
    fencing_token: string;
  }>`select key, order_id::text as order_id, charge_id, fencing_token::text as fencing_token
       from payments`.execute(db);
  const { rows: audit } = await sql<{
    written_in: string;
    key: string;
    written_token: string;
    holder_token: string | null;
  }>`select written_in, key, written_token::text as written_token,
            holder_token::text as holder_token from fencing_audit`.execute(db);

  for (const row of audit) {
    violations.push(
      `fenced-off write committed: ${row.written_in} row of ${row.key} written with token ${row.written_token} while the holder's was ${row.holder_token}`,
    );
  }
  const byKey = <T extends { key: string }>(rows: T[]) => {
    const map = new Map<string, T[]>();
    for (const row of rows) map.set(row.key, [...(map.get(row.key) ?? []), row]);
    return map;
  };
  const operationOf = new Map(operations.map((row) => [row.key, row]));
  const ordersOf = byKey(orders);
  const paymentsOf = byKey(payments);
  const chargesOf = new Map<string, Charge[]>();
  for (const charge of input.charges) {
    chargesOf.set(charge.customer, [...(chargesOf.get(charge.customer) ?? []), charge]);
  }
  const answersOf = new Map<number, Answer[]>();
  for (const answer of input.answers) {
    answersOf.set(answer.paymentId, [...(answersOf.get(answer.paymentId) ?? []), answer]);
  }

  const finished = { created: 0, declined: 0 };
  let inProgress = 0;
  let answersCompared = 0;
  for (const payment of input.payments) {
    const label = `payment ${payment.id} (${payment.key})`;
    const operation = operationOf.get(payment.key);
    const charges = chargesOf.get(payment.request.customer) ?? [];
    const orderRows = ordersOf.get(payment.key) ?? [];
    const paymentRows = paymentsOf.get(payment.key) ?? [];
    if (charges.length > 1) {
      violations.push(`${label}: charged ${charges.length} times by the provider`);
    }
    if (!operation) {
      violations.push(`${label}: no operation row`);
      continue;
    }
    if (operation.state !== 'finished' || operation.response === null) {
      inProgress += 1;
      violations.push(`${label}: left in progress`);
      continue;
    }
    const stored = JSON.stringify(JSON.parse(operation.response));
    const response = JSON.parse(operation.response) as { status: number; chargeId?: string };
    if (orderRows.length !== 1) {
      violations.push(`${label}: ${orderRows.length} order rows for a finished operation`);
    }
    if (charges.length !== 1) {
      violations.push(`${label}: finished, but charged ${charges.length} times`);
    }
    if (response.status === 201) {
      finished.created += 1;
      const paid = paymentRows[0];
      if (paymentRows.length !== 1 || !paid) {
        violations.push(`${label}: ${paymentRows.length} payment rows for a 201`);
      } else {
        if (paid.charge_id !== response.chargeId || charges[0]?.id !== paid.charge_id) {
          violations.push(`${label}: the payment row's charge is not the provider's`);
        }
        if (paid.fencing_token !== operation.fencing_token) {
          violations.push(
            `${label}: the payment row was written by token ${paid.fencing_token}, the operation finished under ${operation.fencing_token}`,
          );
        }
      }
    } else if (response.status === 402) {
      finished.declined += 1;
      if (paymentRows.length !== 0) violations.push(`${label}: a payment row for a 402`);
      if (charges[0] && charges[0].status !== 'declined') {
        violations.push(`${label}: a 402 for a charge that succeeded`);
      }
    } else {
      violations.push(`${label}: unexpected final response status ${response.status}`);
    }
    for (const answer of answersOf.get(payment.id) ?? []) {
      answersCompared += 1;
      if (answer.response !== stored) {
        violations.push(
          `${label}: client ${answer.slot} got ${answer.response}, the stored response is ${stored}`,
        );
      }
    }
  }
  return {
    violations,
    finished,
    inProgress,
    charges: input.charges.length,
    answersCompared,
    businessRows: { orders: orders.length, payments: payments.length },
    fencedWritesCommitted: audit.length,
  };
}
