/**
 * `idempotency-ledger/hono`: the HTTP idempotency contract as Hono middleware (Hono 4, on Node
 * through `@hono/node-server` or any other runtime). See {@link idempotency}.
 *
 * @module
 */
export { HandlerNotRepeatableError } from './handler-not-repeatable-error.ts';
export {
  type HonoIdempotencyOptions,
  type IdempotencyContext,
  type IdempotencyEnv,
  idempotency,
} from './idempotency-middleware.ts';
