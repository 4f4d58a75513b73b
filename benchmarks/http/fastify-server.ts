// Fastify 5 with idempotency-ledger/fastify (from dist/): the plugin registered once, a
// preHandler that validates, then the handler, bare or with `config.idempotency`.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import type { ChargeRequest } from '../business.ts';
import { importBuilt } from '../library.ts';
import {
  BARE_PATH,
  type CreatedCharge,
  createHttpCharge,
  type HttpBenchDB,
  IDEMPOTENT_PATH,
  INVALID_BODY,
  idempotencyOptions,
  insertHttpCharge,
  parseChargeRequest,
} from './charge-route.ts';
import { type FrameworkServer, installedVersion } from './framework-server.ts';

type Adapter = typeof import('../../src/fastify/index.ts');
const { idempotency } = await importBuilt<Adapter>('fastify/index.js');

type ChargeRoute = { Body: ChargeRequest };

async function validate(request: FastifyRequest<ChargeRoute>, reply: FastifyReply) {
  const parsed = parseChargeRequest(request.body);
  if (!parsed) {
    return reply.code(INVALID_BODY.status).type(INVALID_BODY.contentType).send(INVALID_BODY.body);
  }
  request.body = parsed;
}

function send(reply: FastifyReply, charge: CreatedCharge) {
  return reply.code(201).header('location', charge.location).send(charge.body);
}

export const framework: FrameworkServer = {
  name: 'fastify',
  version: installedVersion('fastify'),
  async start(db) {
    const app = Fastify();
    const { scope, ...defaults } = idempotencyOptions(db);
    await app.register(idempotency, defaults);
    app.post<ChargeRoute>(BARE_PATH, { preHandler: validate }, async (request, reply) =>
      send(reply, await createHttpCharge(db, request.body)),
    );
    app.post<ChargeRoute>(
      IDEMPOTENT_PATH,
      { preHandler: validate, config: { idempotency: { scope } } },
      async (request, reply) => {
        const trx: Transaction<HttpBenchDB> = request.idempotency.trx;
        return send(reply, await insertHttpCharge(trx, request.body));
      },
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    return {
      port: typeof address === 'object' && address ? address.port : 0,
      close: () => app.close(),
    };
  },
};
