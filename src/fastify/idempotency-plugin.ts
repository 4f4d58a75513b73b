import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyRequest,
  onSendHookHandler,
  RouteOptions,
} from 'fastify';
import { isSafeMethod, resolveHttpOptions } from '../http/index.ts';
import { InvalidIdempotencyOptionsError } from '../index.ts';
import type { FastifyIdempotencyOptions } from './fastify-idempotency-options.ts';
import { holdUntilCommitted, idempotencyContextOf } from './held-response.ts';
import { idempotentHandler } from './idempotent-handler.ts';

const ADAPTER = 'idempotency-ledger/fastify';

/**
 * The Fastify plugin: register it once, with the database and the options your idempotent routes
 * share, before the routes (it sees the routes added after it, in its instance and the plugins
 * registered in it). Each route with `config.idempotency` (its scope, at least) then runs its
 * handler in a transaction that commits the handler's writes with its response, and answers a
 * retry with the stored response. Other routes are left as they are.
 *
 * - The handler finds the transaction at `request.idempotency.trx` and sends as usual: it returns
 *   a value, or calls `reply.send` (and returns `reply`, or nothing). The response, serialized and
 *   through every onSend hook, is held until the commit: the client never receives a response
 *   whose writes did not commit. A handler that sends nothing gets a 500 problem.
 * - Validate before it (a JSON schema, a preHandler): a request refused there does not use up its
 *   key. An error the handler throws rolls back and goes to Fastify's error handler unchanged.
 * - A 5xx (or what `storeIf` rejects) is rolled back and sent as it is; a retry executes again.
 * - `reply.hijack()` and writes to `reply.raw` bypass Fastify's sending, so they cannot be held:
 *   do not use them in an idempotent handler.
 *
 * @throws {InvalidIdempotencyOptionsError} at registration for invalid options, and when a route
 *   is added with invalid `config.idempotency`, or with it on a GET, HEAD, OPTIONS or TRACE route.
 *
 * @example
 * ```ts
 * const app = Fastify();
 * await app.register(idempotency, { db });
 * app.post(
 *   '/payments',
 *   { config: { idempotency: { scope: (request) => `merchant:${merchantOf(request)}:create-payment` } } },
 *   async (request, reply) => {
 *     const payment = await request.idempotency.trx
 *       .insertInto('payments')
 *       .values({ amount_cents: 1200 })
 *       .returningAll()
 *       .executeTakeFirstOrThrow();
 *     return reply.code(201).header('location', `/payments/${payment.id}`).send(payment);
 *   },
 * );
 * ```
 */
export const idempotency: FastifyPluginAsync<FastifyIdempotencyOptions> = async (
  app: FastifyInstance,
  options: FastifyIdempotencyOptions,
) => {
  const { scope, ...shared } = options as FastifyIdempotencyOptions & { scope?: unknown };
  if (scope !== undefined) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid ${ADAPTER} options: scope is set per route, in config.idempotency`,
      issues: ['scope: set it per route, in config.idempotency.scope'],
    });
  }
  // Fails now, not at the first route, for a bad `db` or shared option.
  resolveHttpOptions({ ...shared, scope: () => '' }, ADAPTER);

  app.decorateRequest('idempotency', {
    getter(this: FastifyRequest) {
      return idempotencyContextOf(this);
    },
  });
  app.addHook('onRoute', (route: RouteOptions) => {
    const own = route.config?.idempotency;
    if (own === undefined) return;
    const methods = [route.method].flat();
    // A mistake, not a no-op: those methods change nothing, so a key has nothing to protect.
    if (methods.some(isSafeMethod)) {
      throw new InvalidIdempotencyOptionsError({
        message: `Invalid ${ADAPTER} options for ${methods.join(',')} ${route.url}: GET, HEAD, OPTIONS and TRACE routes take no config.idempotency`,
        issues: ['method: must not be GET, HEAD, OPTIONS or TRACE'],
      });
    }
    const resolved = resolveHttpOptions<unknown, FastifyRequest>({ ...shared, ...own }, ADAPTER);
    route.handler = idempotentHandler(route.handler, resolved);
    // Last, after the instance's onSend hooks and the route's own: it holds the bytes the client
    // would receive.
    route.onSend = [...[route.onSend ?? []].flat(), holdUntilCommitted as onSendHookHandler];
  });
};

// Not encapsulated (what fastify-plugin does, without depending on it): the request decorator
// and the onRoute hook apply to the instance it is registered on, and to its children.
Object.assign(idempotency, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: ADAPTER,
  [Symbol.for('plugin-meta')]: { name: ADAPTER, fastify: '5.x' },
});
