import type { IncomingMessage } from 'node:http';
import { IDEMPOTENCY_KEY_HEADER } from './idempotency-key-header.ts';
import type { HttpRequestFacts } from './request-fingerprint.ts';

/**
 * What the HTTP core needs to know of a Node `IncomingMessage` (node:http, Express, Connect...).
 * Headers are read from `headersDistinct`, so a key sent twice is seen twice and refused.
 *
 * @param body - The body as parsed (a JSON value), or its bytes; `undefined` for none.
 * @param target - The request target; default `req.url` (Express: pass `req.originalUrl`).
 *
 * @example
 * ```ts
 * const facts = incomingMessageFacts(req, JSON.parse(text));
 * ```
 */
export function incomingMessageFacts(
  req: IncomingMessage,
  body: unknown,
  target: string = req.url ?? '/',
): HttpRequestFacts {
  return {
    method: req.method ?? 'GET',
    target,
    keyHeader: req.headersDistinct[IDEMPOTENCY_KEY_HEADER],
    body,
    header: (name) => req.headersDistinct[name]?.join(', '),
  };
}
