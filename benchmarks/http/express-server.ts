// Express 5 with idempotency-ledger/express (from dist/): express.json(), a validation
// middleware, then the handler, bare or wrapped in idempotent().
import { createServer } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { importBuilt } from '../library.ts';
import {
  BARE_PATH,
  type CreatedCharge,
  createHttpCharge,
  IDEMPOTENT_PATH,
  INVALID_BODY,
  idempotencyOptions,
  insertHttpCharge,
  parseChargeRequest,
} from './charge-route.ts';
import { type FrameworkServer, installedVersion, listenOnFreePort } from './framework-server.ts';

type Adapter = typeof import('../../src/express/index.ts');
const { idempotent } = await importBuilt<Adapter>('express/index.js');

function validate(req: Request, res: Response, next: NextFunction): void {
  const request = parseChargeRequest(req.body);
  if (!request) {
    res.status(INVALID_BODY.status).type(INVALID_BODY.contentType).json(INVALID_BODY.body);
    return;
  }
  req.body = request;
  next();
}

function send(res: Response, charge: CreatedCharge): void {
  res.status(201).location(charge.location).json(charge.body);
}

export const framework: FrameworkServer = {
  name: 'express',
  version: installedVersion('express'),
  start(db) {
    const app = express();
    app.disable('x-powered-by');
    app.post(BARE_PATH, express.json(), validate, async (req, res) => {
      send(res, await createHttpCharge(db, req.body));
    });
    app.post(
      IDEMPOTENT_PATH,
      express.json(),
      validate,
      idempotent(idempotencyOptions(db), async (req, res, { trx }) => {
        send(res, await insertHttpCharge(trx, req.body));
      }),
    );
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      process.stderr.write(`express: 500: ${error.message}\n`);
      res.status(500).end();
    });
    return listenOnFreePort(createServer(app));
  },
};
