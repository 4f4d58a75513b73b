import {
  IdempotencyConflictError,
  IdempotencyError,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  UnstorableResponseError,
} from '../index.ts';
import { IdempotencyKeyHeaderError } from './http-errors.ts';

/** An RFC 9457 problem details object, as the client receives it. */
export interface ProblemDetails {
  /** A URI naming the kind of problem; stable across versions (see {@link PROBLEM_TYPES}). */
  type: string;
  /** A short summary of the kind of problem, the same for every occurrence. */
  title: string;
  /** The HTTP status code. */
  status: number;
  /** What happened and what the client can do, without the key or anything internal. */
  detail: string;
}

/** The slugs of the problem types the HTTP adapters answer with. */
export type ProblemSlug =
  | 'missing-key'
  | 'invalid-key'
  | 'key-reused'
  | 'request-in-progress'
  | 'response-not-storable'
  | 'operation-pending'
  | 'internal-error';

/**
 * Default base of the problem `type` URIs: `urn:idempotency-ledger:problem:missing-key`... Set
 * `problemTypeBase` to your documentation's URL (`https://api.example.com/problems/`) to link
 * clients to it, as the IETF draft suggests.
 */
export const DEFAULT_PROBLEM_TYPE_BASE = 'urn:idempotency-ledger:problem:';

/** Each problem type's status, title and detail: fixed texts, so nothing internal reaches a client. */
export const PROBLEM_TYPES: Readonly<
  Record<ProblemSlug, { status: number; title: string; detail: string }>
> = {
  'missing-key': {
    status: 400,
    title: 'Idempotency-Key header required',
    detail: 'Send an Idempotency-Key header with a unique value, such as a UUID, for this request.',
  },
  'invalid-key': {
    status: 400,
    title: 'Invalid Idempotency-Key header',
    detail:
      'Send the Idempotency-Key header once, as 1 to 255 printable ASCII characters ' +
      '(bare, or as a quoted string).',
  },
  'key-reused': {
    status: 422,
    title: 'Idempotency-Key reused with another request',
    detail: 'This key was used with a different request. Use a new key for a new request.',
  },
  'request-in-progress': {
    status: 409,
    title: 'Request in progress',
    detail: 'A request with this key is still being processed. Retry after the Retry-After delay.',
  },
  'response-not-storable': {
    status: 500,
    title: 'Response could not be stored',
    detail: 'The request was not carried out. It can be retried with the same key.',
  },
  'operation-pending': {
    status: 503,
    title: 'Operation pending',
    detail:
      'The request was started but could not be completed yet. Retry with the same key after ' +
      'the Retry-After delay: it resumes where it stopped.',
  },
  'internal-error': {
    status: 500,
    title: 'Internal server error',
    detail: 'The request could not be completed.',
  },
};

/** A problem ready to send: status, headers and the `application/problem+json` body. */
export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  details: ProblemDetails;
}

/**
 * The problem details that answer a library error, or `undefined` for any other error (yours,
 * the framework's, the database's), which is the framework's error handler's to answer.
 *
 * @param typeBase - Prefix of the `type` URI; default {@link DEFAULT_PROBLEM_TYPE_BASE}.
 *
 * @example
 * ```ts
 * const problem = problemResponseFor(error);
 * if (problem) {
 *   res.writeHead(problem.status, problem.headers).end(problem.body);
 * }
 * ```
 */
export function problemResponseFor(
  error: unknown,
  typeBase: string = DEFAULT_PROBLEM_TYPE_BASE,
): ProblemResponse | undefined {
  if (!(error instanceof IdempotencyError)) return undefined;
  const slug = slugFor(error);
  const { status, title, detail } = PROBLEM_TYPES[slug];
  const details: ProblemDetails = { type: `${typeBase}${slug}`, title, status, detail };
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  const retryAfterMs = retryAfterMsOf(error);
  if (retryAfterMs !== undefined) {
    // Whole seconds, at least 1 (RFC 9110 delay-seconds); a value that is not a finite number of
    // milliseconds (a conflict built elsewhere) still gets a valid header.
    const seconds = Math.ceil(retryAfterMs / 1000);
    headers['retry-after'] = String(Number.isFinite(seconds) ? Math.max(1, seconds) : 1);
  }
  return { status, headers, body: JSON.stringify(details), details };
}

function slugFor(error: IdempotencyError): ProblemSlug {
  if (error instanceof IdempotencyKeyHeaderError && error.problem === 'missing') {
    return 'missing-key';
  }
  if (error instanceof InvalidIdempotencyKeyError) return 'invalid-key';
  if (error instanceof IdempotencyKeyReusedError) return 'key-reused';
  if (error instanceof IdempotencyConflictError) return 'request-in-progress';
  if (error instanceof UnstorableResponseError) return 'response-not-storable';
  // The operations module's errors, by code: this module does not depend on it.
  if (error.code === 'lease_lost') return 'request-in-progress';
  if (error.code === 'operation_pending') return 'operation-pending';
  return 'internal-error';
}

/** The delay a 409 or 503 suggests, from the error's `retryAfterMs` when it has one. */
function retryAfterMsOf(error: IdempotencyError): number | undefined {
  if (error instanceof IdempotencyConflictError) return error.retryAfterMs;
  if (error.code !== 'lease_lost' && error.code !== 'operation_pending') return undefined;
  const value = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' ? value : 1000;
}
