/**
 * The payment service on Hono (on Node, through @hono/node-server). `POST /payments` is
 * idempotent: a retry with the same `Idempotency-Key` gets the first response back instead of a
 * second payment.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/payments PORT=3000 node examples/http/hono/server.ts
 */
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { createMiddleware } from 'hono/factory';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { validator } from 'hono/validator';
import { idempotency } from '../../../src/hono/index.ts';
import {
  announceAndStopOnSignal,
  merchantIdOf,
  openPaymentsDatabase,
  portFromEnvironment,
  problems,
  toPayment,
  validatePayment,
} from '../shared/payments.ts';

const db = await openPaymentsDatabase();

function problem(c: Context, details: { type: string; title: string; status: number }) {
  const status = details.status as ContentfulStatusCode;
  return c.json(details, status, { 'Content-Type': 'application/problem+json' });
}

// The merchant stands in for the authenticated principal: no merchant, no payment (401).
const authenticate = createMiddleware<{ Variables: { merchantId: string } }>(async (c, next) => {
  const merchantId = merchantIdOf(c.req.header('merchant-id'));
  if (!merchantId) return problem(c, problems.unauthenticated);
  c.set('merchantId', merchantId);
  await next();
});

// Validation comes before idempotency(): a bad body gets its 400 without using up the key.
const paymentBody = validator('json', (body, c) => {
  const result = validatePayment(body);
  return result.ok ? result.value : problem(c, result.problem);
});

const app = new Hono();

app.post(
  '/payments',
  authenticate,
  paymentBody,
  // One key space per merchant: a merchant's key never replays another merchant's payment.
  idempotency({ db, scope: (c) => `merchant:${c.get('merchantId')}:create-payment` }),
  async (c) => {
    const { trx, key } = c.var.idempotency;
    const { amount_cents, currency } = c.req.valid('json');
    const row = await trx
      .insertInto('payments')
      .values({ merchant_id: c.var.merchantId, idempotency_key: key, amount_cents, currency })
      .returningAll()
      .executeTakeFirstOrThrow();
    return c.json(toPayment(row), 201, { Location: `/payments/${row.id}` });
  },
);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

app.get('/payments/:id', async (c) => {
  const id = c.req.param('id');
  const row = UUID.test(id)
    ? await db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
    : undefined;
  return row ? c.json(toPayment(row)) : problem(c, problems.notFound);
});

app.onError((error, c) => {
  // The JSON validator's "Malformed JSON in request body".
  if (error instanceof HTTPException && error.status === 400) {
    return problem(c, problems.invalidBody(error.message));
  }
  console.error(error);
  return problem(c, { type: 'about:blank', title: 'Internal Server Error', status: 500 });
});

const server = serve({ fetch: app.fetch, port: portFromEnvironment(), hostname: '127.0.0.1' }, () =>
  announceAndStopOnSignal(
    server as Server,
    () =>
      new Promise((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      ),
    db,
  ),
);
