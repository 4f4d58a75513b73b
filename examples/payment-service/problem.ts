import type { ServerResponse } from 'node:http';

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

/**
 * The service's own refusals as problem details; anything else is a 500 that says nothing of its
 * cause. Library problems (missing key, key reused, request in progress) never get here: the
 * idempotent() adapter answers them.
 */
export function problemFor(error: unknown): Problem {
  if (error instanceof RequestError) {
    return problem(error.status, 'invalid-request', error.title, error.message);
  }
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
