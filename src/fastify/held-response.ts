import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyIdempotencyContext } from './fastify-idempotency-options.ts';

// A payload held for good: the promise never settles, so its onSend chain ends there, and the
// chain, the payload and the promise are collected with the request.
const neverSent = () => new Promise<never>(() => {});

/**
 * One run of the handler inside the request's transaction (there are several when the
 * transaction is retried after a serialization failure). The first payload its response sends
 * is held in the route's onSend hook until the transaction's outcome is known.
 */
export class Attempt {
  /** The handler (or Fastify's error handling on its behalf) called `reply.send`. */
  sendCalled = false;
  /** The handler returned (or resolved to) `reply`: it sends, or has sent, on its own. */
  returnedReply = false;
  /** Resolves when the first payload reached the onSend hook. */
  readonly arrival: Promise<void>;
  /** That payload, once {@link arrived}. */
  payload: unknown;
  /** What to release: the payload, or its bytes once a stream was read. */
  sendable: unknown;
  readonly #released: Promise<unknown>;
  #arrive!: () => void;
  #release!: (payload: unknown) => void;
  #arrived = false;

  constructor() {
    this.arrival = new Promise((resolve) => {
      this.#arrive = resolve;
    });
    this.#released = new Promise((resolve) => {
      this.#release = resolve;
    });
  }

  /** The onSend side: the first payload waits for {@link release}; any later one never goes. */
  hold(payload: unknown): Promise<unknown> {
    if (this.#arrived) return neverSent();
    this.#arrived = true;
    this.payload = payload;
    this.#arrive();
    return this.#released;
  }

  get arrived(): boolean {
    return this.#arrived;
  }

  /** Sends the held response on: its transaction committed, or was never going to. */
  release(): void {
    this.#release(this.sendable);
  }
}

/** What the plugin knows of an idempotent request while it runs. */
interface Exchange {
  context: FastifyIdempotencyContext | undefined;
  /** The attempt whose response the onSend hook holds; undefined once the outcome is known. */
  attempt: Attempt | undefined;
}

const exchanges = new WeakMap<FastifyRequest, Exchange>();

/** Starts a new attempt: the handler's next response is held for it. */
export function beginAttempt(request: FastifyRequest, context: FastifyIdempotencyContext): Attempt {
  const attempt = new Attempt();
  exchanges.set(request, { context, attempt });
  return attempt;
}

/**
 * Ends the holding: payloads that reach the hook from now on are the plugin's own (a replay, a
 * problem) or Fastify's error handler's, and go through.
 */
export function endAttempts(request: FastifyRequest): void {
  const exchange = exchanges.get(request);
  if (exchange) exchange.attempt = undefined;
}

/** `request.idempotency`'s getter. */
export function idempotencyContextOf(request: FastifyRequest): FastifyIdempotencyContext {
  const context = exchanges.get(request)?.context;
  if (!context) {
    throw new Error(
      'request.idempotency is only set in the handler of a route with config.idempotency',
    );
  }
  return context;
}

/**
 * The route's onSend hook, added after all others: during an attempt it hands the serialized
 * payload to the attempt and holds it until the transaction committed, or for good when that
 * response must not be sent (a rollback, a replay, a problem: those are sent anew). Outside an
 * attempt it lets the payload through, unless the response is already sent (a second
 * `reply.send` of the handler's, which Fastify would refuse anyway).
 */
export function holdUntilCommitted(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
): Promise<unknown> {
  const attempt = exchanges.get(request)?.attempt;
  if (attempt) return attempt.hold(payload);
  return reply.sent ? neverSent() : Promise.resolve(payload);
}
