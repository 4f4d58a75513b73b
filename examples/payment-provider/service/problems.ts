/**
 * Every refusal as RFC 9457 problem details: the library's errors through `problemResponseFor`
 * (missing or bad key 400, key reused 422, in progress or lease lost 409, operation pending 503,
 * with Retry-After), and the service's own (bad body 400, unknown route 404, anything else 500).
 */
import type { ServerResponse } from 'node:http';
import { type ProblemResponse, problemResponseFor } from '../../../src/http/index.ts';

/**
 * Relative problem type URIs (RFC 9457 allows them): `/problems/operation-pending`... A real API
 * would point them at its documentation.
 */
export const PROBLEM_TYPE_BASE = '/problems/';

/** A refusal the service makes itself, before the operation starts. */
export class RequestProblem extends Error {
  readonly status: number;
  readonly slug: string;
  readonly title: string;

  constructor(options: { status: number; slug: string; title: string; detail: string }) {
    super(options.detail);
    this.name = new.target.name;
    this.status = options.status;
    this.slug = options.slug;
    this.title = options.title;
  }
}

/**
 * The problem that answers `error`. Library errors carry fixed texts (never the key); an
 * unexpected error becomes a 500 that says nothing of its cause.
 */
export function problemFor(error: unknown): ProblemResponse {
  const library = problemResponseFor(error, PROBLEM_TYPE_BASE);
  if (library) return library;
  const { status, slug, title, message } =
    error instanceof RequestProblem
      ? error
      : {
          status: 500,
          slug: 'internal-error',
          title: 'Internal server error',
          message: 'The request could not be completed.',
        };
  const details = { type: `${PROBLEM_TYPE_BASE}${slug}`, title, status, detail: message };
  return {
    status,
    headers: { 'content-type': 'application/problem+json' },
    body: JSON.stringify(details),
    details,
  };
}

export function sendProblem(res: ServerResponse, problem: ProblemResponse): void {
  res.writeHead(problem.status, problem.headers).end(problem.body);
}
