// Type tests: an idempotent Express handler is typed like any other Express handler.
import express, { type Request, type Response } from 'express';
import type { Kysely } from 'kysely';
import { expectTypeOf, test } from 'vitest';
import { idempotent } from '../../src/express/index.ts';
import type { Database } from '../support/ledger-fixture.ts';

declare const db: Kysely<Database>;
const app = express();

type Locals = { merchantId: string };

test('route params, body and res.locals keep their types', () => {
  app.post(
    '/payments/:id/refunds',
    idempotent(
      { db, scope: (req) => `merchant:${req.get('merchant-id')}` },
      async (
        req: Request<{ id: string }, unknown, { amount: number }, Record<string, string>, Locals>,
        res: Response<unknown, Locals>,
        { trx, key },
      ) => {
        expectTypeOf(req.params.id).toEqualTypeOf<string>();
        expectTypeOf(req.body.amount).toEqualTypeOf<number>();
        expectTypeOf(res.locals.merchantId).toEqualTypeOf<string>();
        await trx.insertInto('payments').values({ scope: 's', key, amount: 1 }).execute();
        res.status(201).end();
      },
    ),
  );
});

test('the transaction is typed with the database', () => {
  idempotent({ db, scope: () => 's' }, async (_req, _res, { trx }) => {
    // @ts-expect-error: no such table
    await trx.insertInto('refunds').values({}).execute();
  });
});
