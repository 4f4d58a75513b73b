// A payment service on Express, with idempotency-ledger/express:
//
//   DATABASE_URL=postgres://... PORT=3000 node examples/http/express/server.ts
import express, { type NextFunction, type Request, type Response } from 'express';
import { idempotent } from '../../../src/express/index.ts';
import {
  announceAndStopOnSignal,
  isPaymentId,
  merchantIdOf,
  openPaymentsDatabase,
  portFromEnvironment,
  problems,
  toPayment,
  validatePayment,
} from '../shared/payments.ts';

const db = await openPaymentsDatabase();
const app = express();
app.disable('x-powered-by');

/** Stands in for authentication: the merchant is the principal a key belongs to. */
function authenticate(req: Request, res: Response, next: NextFunction): void {
  const merchantId = merchantIdOf(req.get('merchant-id'));
  if (!merchantId) {
    res.status(401).type('application/problem+json').json(problems.unauthenticated);
    return;
  }
  res.locals.merchantId = merchantId;
  next();
}

/** Refuses a bad body before the idempotent part, so that it does not use up the key. */
function validate(req: Request, res: Response, next: NextFunction): void {
  const result = validatePayment(req.body);
  if (!result.ok) {
    res.status(400).type('application/problem+json').json(result.problem);
    return;
  }
  req.body = result.value;
  next();
}

app.post(
  '/payments',
  authenticate,
  express.json(),
  validate,
  idempotent(
    // Per merchant: one merchant's key can never replay another merchant's payment.
    { db, scope: (req) => `merchant:${req.get('merchant-id')}:create-payment` },
    async (req, res, { trx, key }) => {
      const row = await trx
        .insertInto('payments')
        .values({ ...req.body, merchant_id: res.locals.merchantId, idempotency_key: key })
        .returningAll()
        .executeTakeFirstOrThrow();
      res.status(201).location(`/payments/${row.id}`).json(toPayment(row));
    },
  ),
);

app.get('/payments/:id', async (req, res) => {
  const row = isPaymentId(req.params.id)
    ? await db.selectFrom('payments').selectAll().where('id', '=', req.params.id).executeTakeFirst()
    : undefined;
  if (!row) res.status(404).type('application/problem+json').json(problems.notFound);
  else res.json(toPayment(row));
});

// Last: body-parser's errors (malformed JSON) are the client's; anything else is ours to log.
app.use(
  (
    error: { status?: number; message?: string },
    _req: Request,
    res: Response,
    _next: NextFunction,
  ) => {
    if (error.status !== undefined && error.status >= 400 && error.status < 500) {
      res
        .status(400)
        .type('application/problem+json')
        .json(problems.invalidBody('The body is not valid JSON'));
      return;
    }
    process.stderr.write(`500: ${String(error.message)}\n`);
    res.status(500).type('application/problem+json').json(problems.internal);
  },
);

const server = app.listen(portFromEnvironment(), '127.0.0.1', () => {
  announceAndStopOnSignal(
    server,
    () => new Promise((resolve) => server.close(() => resolve())),
    db,
  );
});
