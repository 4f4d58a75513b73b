/**
 * The Hono app the adapter's tests drive over real sockets: one route per behaviour, all writing
 * to the fixture's `payments` table through `c.var.idempotency.trx`.
 */
import { serve } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { validator } from 'hono/validator';
import { type Kysely, sql } from 'kysely';
import { expectTypeOf } from 'vitest';
import {
  type HonoIdempotencyOptions,
  type IdempotencyContext,
  idempotency,
} from '../../../src/hono/index.ts';
import type { IdempotencyError } from '../../../src/index.ts';
import { deferred } from '../../support/barrier.ts';
import type { Database } from '../../support/ledger-fixture.ts';

/** An amount whose payment fails at commit with a serialization failure (a deferred trigger). */
export const SERIALIZATION_FAILURE_AMOUNT = 40_001;

/** Holds a handler inside its transaction, after its write, until the test releases it. */
export interface Gate {
  inside: Promise<void>;
  release(): void;
}

export interface TestApp {
  url: string;
  /** The next request with this key waits at its gate once its payment is written. */
  holdNext(key: string): Gate;
  /** Library errors passed to `onError` (5xx problems). */
  libraryErrors: IdempotencyError[];
  close(): Promise<void>;
}

/** The scope of a request: the merchant header, as a real service would use its principal. */
export function scopeOf(c: Context): string {
  return `merchant:${c.req.header('merchant-id') ?? 'anonymous'}:create-payment`;
}

/** Adds the objects the commit-failure routes rely on: deferred checks that fail at COMMIT. */
export async function addCommitTimeChecks(db: Kysely<Database>): Promise<void> {
  await sql`
    create table receipts (
      payment_id bigint not null references payments (id) deferrable initially deferred
    )`.execute(db);
  await sql`
    create function fail_with_serialization_failure() returns trigger language plpgsql as $$
    begin
      raise exception 'forced serialization failure' using errcode = '40001';
    end $$`.execute(db);
  await sql`
    create constraint trigger payments_fail_at_commit after insert on payments
      deferrable initially deferred for each row
      when (new.amount = ${sql.lit(SERIALIZATION_FAILURE_AMOUNT)})
      execute function fail_with_serialization_failure()`.execute(db);
}

/** Builds the app on `db` and serves it on a free port of 127.0.0.1. */
export async function startTestApp(db: Kysely<Database>): Promise<TestApp> {
  const gates = new Map<string, { inside: () => void; released: Promise<void> }>();
  const libraryErrors: IdempotencyError[] = [];
  const options: HonoIdempotencyOptions<Database> = {
    db,
    scope: scopeOf,
    onError: (error) => libraryErrors.push(error),
  };
  const attempts = new Map<string, number>();
  /** How many times a route's handler ran for a key, this one included. */
  const attempt = (route: string, key: string) => {
    const count = (attempts.get(`${route} ${key}`) ?? 0) + 1;
    attempts.set(`${route} ${key}`, count);
    return count;
  };

  const app = new Hono();
  // An outer middleware's header, which every response of the app carries (replays too).
  app.use('*', async (c, next) => {
    c.header('X-Served-By', 'test-app');
    await next();
  });
  app.onError((error, c) =>
    error instanceof HTTPException
      ? error.getResponse()
      : c.json({ handledBy: 'app.onError', message: error.message }, 500),
  );

  /** Writes the payment, waits at the key's gate if any, and answers 201 with Location. */
  const createPayment = async (c: Context, idem: IdempotencyContext<Database>, amount: number) => {
    const row = await idem.trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key: idem.key, amount })
      .returning(['id', 'amount'])
      .executeTakeFirstOrThrow();
    const gate = gates.get(idem.key);
    if (gate) {
      gates.delete(idem.key);
      gate.inside();
      await gate.released;
    }
    return c.json({ id: row.id, amount: row.amount }, 201, { Location: `/payments/${row.id}` });
  };

  app.post('/payments', idempotency(options), async (c) => {
    expectTypeOf(c.var.idempotency).toEqualTypeOf<IdempotencyContext<Database>>();
    const { amount } = await c.req.json<{ amount: number }>();
    return createPayment(c, c.var.idempotency, amount);
  });
  app.post('/payments-reject', idempotency({ ...options, onConcurrent: 'reject' }), async (c) =>
    createPayment(c, c.var.idempotency, (await c.req.json<{ amount: number }>()).amount),
  );
  // The handler reads the raw Fetch Request, as one passing it on to another library would.
  app.post('/raw', idempotency(options), async (c) =>
    createPayment(c, c.var.idempotency, ((await c.req.raw.json()) as { amount: number }).amount),
  );

  const amountBody = validator('json', (value: { amount?: unknown }, c) =>
    typeof value.amount === 'number' && value.amount > 0
      ? { amount: value.amount }
      : c.json({ error: 'amount must be a positive number' }, 400),
  );
  app.post('/validated-before', amountBody, idempotency(options), async (c) =>
    createPayment(c, c.var.idempotency, c.req.valid('json').amount),
  );
  app.post('/validated-after', idempotency(options), amountBody, async (c) =>
    createPayment(c, c.var.idempotency, c.req.valid('json').amount),
  );

  // 503 on the first attempt of each key, after writing: not final, so not stored.
  app.post('/unavailable-once', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    if (attempt('unavailable-once', key) > 1) return createPayment(c, c.var.idempotency, 1);
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    return c.json({ error: 'try again' }, 503, { 'Retry-After': '1' });
  });
  // Throws on the first attempt of each key, after writing.
  app.post('/throws-once', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    if (attempt('throws-once', key) > 1) return createPayment(c, c.var.idempotency, 1);
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    c.header('Location', '/payments/never-created');
    throw new Error('the handler failed');
  });
  // Refuses the request with an HTTPException (a 4xx, final) after writing.
  app.post('/refuses-after-writing', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    throw new HTTPException(409, { message: 'refused by the handler' });
  });
  // A receipt for a payment that does not exist: the deferred foreign key fails at COMMIT.
  app.post('/commit-fails', idempotency(options), async (c) => {
    const response = await createPayment(c, c.var.idempotency, 1);
    await sql`insert into receipts (payment_id) values (-1)`.execute(c.var.idempotency.trx);
    return response;
  });

  // Writes, then forgets to return its response.
  app.post('/returns-nothing', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    return undefined as unknown as Response;
  });

  app.post('/stream', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    const chunks = ['first chunk;', ' second chunk, ', 'ünïcödé third'];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        // One chunk per turn of the event loop, as a producer that waits on something would.
        await new Promise((resolve) => setImmediate(resolve));
        const chunk = chunks.shift();
        if (chunk === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(chunk));
      },
    });
    return c.body(body, 201, { 'Content-Type': 'text/plain; charset=utf-8' });
  });
  // Echoes the request's bytes reversed with a non-UTF-8 prefix.
  app.post('/binary', idempotency(options), async (c) => {
    const { trx, key } = c.var.idempotency;
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    const received = new Uint8Array(await c.req.arrayBuffer());
    const body = new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28, ...received.reverse()]);
    return c.body(body, 201, { 'Content-Type': 'application/octet-stream' });
  });
  app.post('/large', idempotency({ ...options, maxResponseBytes: 64 }), async (c) => {
    const { trx, key } = c.var.idempotency;
    await trx
      .insertInto('payments')
      .values({ scope: scopeOf(c), key, amount: 1 })
      .execute();
    // A stream that never ends: buffering it must stop at the limit.
    const endless = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(new Uint8Array(16).fill(0x78)),
    });
    return c.body(endless, 201, { 'Content-Type': 'text/plain' });
  });

  // Every method of /things goes through the middleware; GET must pass untouched.
  app.use('/things/*', idempotency(options));
  app.get('/things/:id', (c) =>
    c.json({ id: c.req.param('id'), variableSet: Object.hasOwn(c.var, 'idempotency') }),
  );

  const port = deferred<number>();
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
    port.resolve(info.port),
  );
  return {
    url: `http://127.0.0.1:${await port.promise}`,
    holdNext(key) {
      const inside = deferred();
      const released = deferred();
      gates.set(key, { inside: () => inside.resolve(), released: released.promise });
      return { inside: inside.promise, release: () => released.resolve() };
    },
    libraryErrors,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}
