import type { FastifyRequest } from 'fastify';
import { type HttpRequestFacts, IDEMPOTENCY_KEY_HEADER } from '../http/index.ts';

/** What the HTTP core needs of a Fastify request. */
export function requestFactsOf(request: FastifyRequest): HttpRequestFacts {
  return {
    method: request.method,
    target: request.url,
    // Every value, not the joined string: a repeated header is refused rather than guessed at.
    keyHeader: request.raw.headersDistinct[IDEMPOTENCY_KEY_HEADER],
    // Parsed by Fastify's content type parser (JSON, text, or a Buffer).
    body: request.body,
    header(name) {
      const value = request.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
  };
}
