import type { FastifyRequest } from 'fastify';
import type { HttpIdempotencyOptions, IdempotencyContext } from '../http/index.ts';

/**
 * Augment this interface to type `request.idempotency.trx` with your database:
 *
 * @example
 * ```ts
 * declare module 'idempotency-ledger/fastify' {
 *   interface FastifyIdempotencyTypes {
 *     database: Database; // the type you give Kysely<Database>
 *   }
 * }
 * ```
 */
// biome-ignore lint/suspicious/noEmptyInterface: empty until the application augments it
export interface FastifyIdempotencyTypes {}

/** The database type of `request.idempotency.trx`: yours once augmented, `any` until then. */
export type IdempotentDatabase = FastifyIdempotencyTypes extends { database: infer DB }
  ? DB
  : // biome-ignore lint/suspicious/noExplicitAny: no database type was declared
    any;

/**
 * `request.idempotency` in the handler of an idempotent route: the request's transaction (typed
 * with {@link FastifyIdempotencyTypes}), its key and its scope.
 */
export type FastifyIdempotencyContext = IdempotencyContext<IdempotentDatabase>;

/**
 * The plugin's options: the database and the defaults every idempotent route starts from. The
 * scope is not among them; each route names its own (see {@link FastifyIdempotencyRouteOptions}).
 *
 * @example
 * ```ts
 * await app.register(idempotency, { db, onConcurrent: 'wait', ttlMs: 24 * 60 * 60 * 1000 });
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: any database; the handler's type comes from FastifyIdempotencyTypes
export type FastifyIdempotencyOptions<DB = any> = Omit<
  HttpIdempotencyOptions<DB, FastifyRequest>,
  'scope'
>;

/**
 * A route's `config.idempotency`: its scope, and any option of the plugin to override for it
 * (a `db` of its own, `onConcurrent`, `storeIf`...).
 *
 * @example
 * ```ts
 * app.post('/payments', {
 *   config: {
 *     idempotency: {
 *       scope: (request) => `merchant:${request.headers['merchant-id']}:create-payment`,
 *       onConcurrent: 'reject',
 *     },
 *   },
 * }, handler);
 * ```
 */
export interface FastifyIdempotencyRouteOptions
  // biome-ignore lint/suspicious/noExplicitAny: any database; a route may bring its own
  extends Partial<Omit<HttpIdempotencyOptions<any, FastifyRequest>, 'scope'>> {
  /**
   * The scope of the request's key: the authenticated principal and the operation, so that one
   * client's key can never replay another client's response. Required.
   */
  scope: (request: FastifyRequest) => string | Promise<string>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The idempotent request's transaction, key and scope, in the handler of a route with
     * `config.idempotency`. Reading it on any other route throws.
     */
    readonly idempotency: FastifyIdempotencyContext;
  }
  interface FastifyContextConfig {
    /** Makes the route idempotent; see `idempotency-ledger/fastify`. */
    idempotency?: FastifyIdempotencyRouteOptions;
  }
}
