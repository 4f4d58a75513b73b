import type { ServerResponse } from 'node:http';
import {
  IdempotencyConflictError,
  IdempotencyError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
} from '../../src/index.ts';

/** An RFC 9457 problem details object, plus how long the client should wait before retrying. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  retryAfterSeconds?: number;
}

/** A request the service refuses before it reaches the ledger (bad body, unknown route). */
export class RequestError extends Error {
  readonly status: number;
  readonly title: string;

  constructor(status: number, title: string, detail: string) {
    super(detail);
    this.status = status;
    this.title = title;
  }
}

export function problemFor(error: unknown): Problem {
  if (error instanceof RequestError) {
    return problem(error.status, 'invalid-request', error.title, error.message);
  }
  if (error instanceof InvalidIdempotencyKeyError) {
    return problem(400, 'invalid-idempotency-key', 'Invalid Idempotency-Key', error.message);
  }
  if (error instanceof IdempotencyKeyReusedError) {
    return problem(422, 'idempotency-key-reused', 'Idempotency-Key reused', error.message);
  }
  if (error instanceof IdempotencyConflictError) {
    return {
      ...problem(409, 'request-in-progress', 'Request in progress', error.message),
      retryAfterSeconds: Math.max(1, Math.ceil(error.retryAfterMs / 1000)),
    };
  }
  if (error instanceof IdempotencyError && error.status !== undefined && error.status < 500) {
    return problem(error.status, error.code, 'Request refused', error.message);
  }
  // Anything else is ours (or the database's) to fix; its message is not the client's business.
  return problem(500, 'internal-error', 'Internal server error', 'The payment was not created');
}

export function sendProblem(res: ServerResponse, details: Problem): void {
  const { retryAfterSeconds, ...body } = details;
  res.writeHead(details.status, {
    'content-type': 'application/problem+json',
    ...(retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) }),
  });
  res.end(JSON.stringify(body));
}

function problem(status: number, slug: string, title: string, detail: string): Problem {
  // A relative URI reference, which RFC 9457 allows; a real API would link its documentation.
  return { type: `/problems/${slug}`, title, status, detail };
}
