// A payment service on Fastify 5, with idempotency-ledger/fastify:
//
//   DATABASE_URL=postgres://... PORT=3000 node examples/http/fastify/server.ts
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import { idempotency } from '../../../src/fastify/index.ts';
import {
  announceAndStopOnSignal,
  type Database,
  isPaymentId,
  merchantIdOf,
  openPaymentsDatabase,
  type PaymentRequest,
  portFromEnvironment,
  problems,
  toPayment,
  validatePayment,
} from '../shared/payments.ts';

const db = await openPaymentsDatabase();
const app = Fastify();
await app.register(idempotency, { db });

/** Stands in for authentication: the merchant is the principal a key belongs to. */
function merchantOf(request: FastifyRequest): string | undefined {
  return merchantIdOf(request.headers['merchant-id']);
}

const problem = (reply: FastifyReply, body: { status: number }) =>
  reply.code(body.status).type('application/problem+json').send(body);

app.post<{ Body: PaymentRequest }>(
  '/payments',
  {
    // Before the body is read, and before the idempotent part.
    onRequest: async (request, reply) => {
      if (!merchantOf(request)) return problem(reply, problems.unauthenticated);
    },
    // A bad body is refused before the idempotent part, so that it does not use up the key.
    preHandler: async (request, reply) => {
      const result = validatePayment(request.body);
      if (!result.ok) return problem(reply, result.problem);
      request.body = result.value;
    },
    // Per merchant: one merchant's key can never replay another merchant's payment.
    config: {
      idempotency: { scope: (request) => `merchant:${merchantOf(request)}:create-payment` },
    },
  },
  async (request, reply) => {
    const { key } = request.idempotency;
    const trx: Transaction<Database> = request.idempotency.trx;
    const row = await trx
      .insertInto('payments')
      .values({ ...request.body, merchant_id: String(merchantOf(request)), idempotency_key: key })
      .returningAll()
      .executeTakeFirstOrThrow();
    return reply.code(201).header('location', `/payments/${row.id}`).send(toPayment(row));
  },
);

app.get<{ Params: { id: string } }>('/payments/:id', async (request, reply) => {
  const { id } = request.params;
  const row = isPaymentId(id)
    ? await db.selectFrom('payments').selectAll().where('id', '=', id).executeTakeFirst()
    : undefined;
  return row ? toPayment(row) : problem(reply, problems.notFound);
});

// Malformed JSON is the client's (400); anything else is ours to log.
app.setErrorHandler((error: { statusCode?: number; message?: string }, _request, reply) => {
  if (error.statusCode === 400) {
    return problem(reply, problems.invalidBody('The body is not valid JSON'));
  }
  if (error.statusCode !== undefined && error.statusCode > 400 && error.statusCode < 500) {
    return reply.send(error);
  }
  process.stderr.write(`500: ${String(error.message)}\n`);
  return problem(reply, problems.internal);
});

await app.listen({ port: portFromEnvironment(), host: '127.0.0.1' });
announceAndStopOnSignal(app.server, () => app.close(), db);
