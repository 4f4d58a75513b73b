// Hono 4 on @hono/node-server with idempotency-ledger/hono (from dist/): a validator, then the
// handler, bare or behind the idempotency() middleware.
import { createAdaptorServer } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { validator } from 'hono/validator';
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
import { type FrameworkServer, installedVersion, listenOnFreePort } from './framework-server.ts';

type Adapter = typeof import('../../src/hono/index.ts');
const { idempotency } = await importBuilt<Adapter>('hono/index.js');

const validate = validator('json', (body, c) => {
  const parsed = parseChargeRequest(body);
  return (
    parsed ??
    c.json(INVALID_BODY.body, INVALID_BODY.status, {
      'Content-Type': INVALID_BODY.contentType,
    })
  );
});

function send(c: Context, charge: CreatedCharge) {
  return c.json(charge.body, 201, { Location: charge.location });
}

export const framework: FrameworkServer = {
  name: 'hono',
  version: installedVersion('hono'),
  start(db) {
    const app = new Hono();
    app.post(BARE_PATH, validate, async (c) =>
      send(c, await createHttpCharge(db, c.req.valid('json'))),
    );
    app.post(
      IDEMPOTENT_PATH,
      validate,
      idempotency<HttpBenchDB>(idempotencyOptions(db)),
      async (c) => send(c, await insertHttpCharge(c.var.idempotency.trx, c.req.valid('json'))),
    );
    app.onError((error, c) => {
      process.stderr.write(`hono: 500: ${error.message}\n`);
      return c.body(null, 500);
    });
    return listenOnFreePort(createAdaptorServer({ fetch: app.fetch }) as never);
  },
};
