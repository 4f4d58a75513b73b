/**
 * `idempotency-ledger/fastify`: the HTTP idempotency contract for Fastify 5. Register the
 * {@link idempotency} plugin once, then give each route that must execute once per key a
 * `config.idempotency` with its scope: its handler runs in a transaction
 * (`request.idempotency.trx`) that commits its writes with its response, before the client
 * receives a byte of it; a retry with the same key gets the stored response back.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { idempotency } from 'idempotency-ledger/fastify';
 *
 * declare module 'idempotency-ledger/fastify' {
 *   interface FastifyIdempotencyTypes {
 *     database: Database; // request.idempotency.trx is a Transaction<Database>
 *   }
 * }
 *
 * const app = Fastify();
 * await app.register(idempotency, { db });
 * app.post(
 *   '/payments',
 *   { config: { idempotency: { scope: (request) => `merchant:${merchantOf(request)}:create-payment` } } },
 *   async (request, reply) => {
 *     const payment = await request.idempotency.trx
 *       .insertInto('payments')
 *       .values(request.body as NewPayment)
 *       .returningAll()
 *       .executeTakeFirstOrThrow();
 *     return reply.code(201).header('location', `/payments/${payment.id}`).send(payment);
 *   },
 * );
 * ```
 *
 * @module
 */
export type {
  FastifyIdempotencyContext,
  FastifyIdempotencyOptions,
  FastifyIdempotencyRouteOptions,
  FastifyIdempotencyTypes,
  IdempotentDatabase,
} from './fastify-idempotency-options.ts';
export { idempotency } from './idempotency-plugin.ts';
