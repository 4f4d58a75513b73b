/**
 * `idempotency-ledger/http`: the HTTP idempotency contract, framework-neutral. The adapters
 * (`idempotency-ledger/express`, `/fastify`, `/hono`, `/node-http`) are built on it, and so can
 * yours: {@link runIdempotentRequest} does the work, given what a framework knows of a request and
 * a function that runs the handler in the request's transaction.
 *
 * @module
 */
export {
  IdempotencyKeyHeaderError,
  type KeyHeaderProblem,
  ResponseNotSentError,
} from './http-errors.ts';
export {
  DEFAULT_REPLAYED_HEADER,
  DEFAULT_STORED_HEADERS,
  type FingerprintChoice,
  type HttpIdempotencyOptions,
  isFinalResponse,
  type LedgerOptions,
  type ResolvedHttpOptions,
  resolveHttpOptions,
  type StoreIfResponse,
} from './http-idempotency-options.ts';
export { IDEMPOTENCY_KEY_HEADER, readIdempotencyKey } from './idempotency-key-header.ts';
export { incomingMessageFacts } from './incoming-message-facts.ts';
export {
  DEFAULT_PROBLEM_TYPE_BASE,
  PROBLEM_TYPES,
  type ProblemDetails,
  type ProblemResponse,
  type ProblemSlug,
  problemResponseFor,
} from './problem-details.ts';
export { type HttpRequestFacts, httpRequestFingerprint } from './request-fingerprint.ts';
export {
  type ExecuteHandler,
  type HttpOutcome,
  type IdempotencyContext,
  runIdempotentRequest,
} from './run-idempotent-request.ts';
export { isSafeMethod } from './safe-methods.ts';
export { serveOnServerResponse } from './serve-on-server-response.ts';
export {
  captureServerResponse,
  type ResponseCapture,
  sendSnapshot,
} from './server-response-capture.ts';
export { type HttpResponseSnapshot, storedHttpResponseSchema } from './stored-http-response.ts';
