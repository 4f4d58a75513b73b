import type { FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import type { HttpIdempotencyOptions } from '../http/index.ts';

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

/** `request.idempotency` in the handler of an idempotent route. */
export interface FastifyIdempotencyContext {
  /**
   * The request's transaction: the handler's writes commit with the stored response, or not at
   * all. Typed with {@link FastifyIdempotencyTypes}.
   */
  trx: Transaction<IdempotentDatabase>;
  /** The key the client sent (unquoted), e.g. to store it beside the business row. */
  key: string;
  /** The scope the route's `scope` function gave this request. */
  scope: string;
}

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
