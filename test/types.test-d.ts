/**
 * Type-level tests, checked by `npm run typecheck` (tsc): what a caller's editor shows for
 * withIdempotency's parameters and result. Nothing here runs.
 */
import type { ControlledTransaction, Kysely, Transaction } from 'kysely';
import { expectTypeOf } from 'vitest';
import { z } from 'zod';
import {
  type Jsonified,
  ResponseEncryption,
  responseEncryption,
  withIdempotency,
} from '../src/index.ts';
import type { Database } from './support/ledger-fixture.ts';

declare const db: Kysely<Database>;
declare const trx: Transaction<Database>;
declare const controlled: ControlledTransaction<Database, ['sp']>;
declare const header: string | string[] | undefined;

export async function typeChecks() {
  // Without responseSchema, the response is fn's value after a JSON round trip.
  const plain = await withIdempotency(db, { scope: 's', key: header }, async (t) => {
    expectTypeOf(t).toEqualTypeOf<Transaction<Database>>();
    return { id: 'p1', at: new Date(), amount: 10, note: undefined as string | undefined };
  });
  expectTypeOf(plain.response).toEqualTypeOf<{
    id: string;
    at: string;
    amount: number;
    note: string | undefined;
  }>();
  expectTypeOf(plain.replayed).toEqualTypeOf<boolean>();

  // With responseSchema, fn returns the schema's input and every call returns its output.
  const responseSchema = z.object({
    cents: z.number().transform((cents) => cents / 100),
    at: z.coerce.date(),
  });
  const typed = await withIdempotency(db, { scope: 's', key: 'k', responseSchema }, async () => ({
    cents: 250,
    at: new Date(),
  }));
  expectTypeOf(typed.response).toEqualTypeOf<{ cents: number; at: Date }>();

  // Inside a transaction, fn gets that very transaction, savepoint methods included.
  await withIdempotency(trx, { scope: 's', key: 'k' }, async (t) => {
    expectTypeOf(t).toEqualTypeOf<Transaction<Database>>();
  });
  await withIdempotency(controlled, { scope: 's', key: 'k' }, async (t) => {
    // Assignable both ways (toEqualTypeOf cannot compare its generic savepoint methods).
    const asControlled: ControlledTransaction<Database, ['sp']> = t;
    expectTypeOf(t.rollbackToSavepoint).toBeFunction();
    void asControlled;
  });

  // responseEncryption()'s example, as its TSDoc shows it.
  const encryption = responseEncryption({
    keys: [
      { id: '2026-12', key: Buffer.from(process.env.LEDGER_KEY_2026_12 ?? '', 'base64') },
      { id: '2026-06', key: Buffer.from(process.env.LEDGER_KEY_2026_06 ?? '', 'base64') },
    ],
  });
  expectTypeOf(encryption).toEqualTypeOf<ResponseEncryption>();
  await withIdempotency(db, { scope: 's', key: header, request: {}, encryption }, async () => 1);
  // Built only by responseEncryption(), which validates the keys.
  // @ts-expect-error: the constructor is private.
  new ResponseEncryption([], 'accept');

  expectTypeOf<Jsonified<{ big: bigint; f: () => void; list: Date[] }>>().toEqualTypeOf<{
    big: never;
    f: never;
    list: string[];
  }>();
}
