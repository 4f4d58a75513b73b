import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { type HttpRequestFacts, IDEMPOTENCY_KEY_HEADER } from '../http/index.ts';

// JSON media types (`application/json`, `application/merge-patch+json`...), as Hono's validator
// recognises them.
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * What the HTTP core needs to know of a Hono request: method, target, every value of the
 * `Idempotency-Key` header, and the body (parsed when it is JSON, its bytes otherwise), read
 * without taking it from the handler.
 */
export async function requestFacts(c: Context): Promise<HttpRequestFacts> {
  return {
    method: c.req.method,
    target: targetOf(c.req.url),
    keyHeader: keyHeaderOf(c),
    body: parsedBody(c.req.header('content-type'), await requestBodyBytes(c)),
    header: (name) => c.req.header(name),
  };
}

/** Path and query of an absolute URL, as sent (`new URL()` would re-encode them). */
function targetOf(url: string): string {
  const pathStart = url.indexOf('/', url.indexOf('://') + 3);
  return pathStart === -1 ? '/' : url.slice(pathStart);
}

/**
 * Every value of the key header. On Node (@hono/node-server puts the `IncomingMessage` in
 * `c.env.incoming`), a header sent twice is seen as two values and refused. Elsewhere the Fetch
 * API has already joined them into one `a, b` value, which is refused only when the values are
 * quoted strings.
 */
function keyHeaderOf(c: Context): string | readonly string[] | undefined {
  const env: unknown = c.env;
  const incoming =
    typeof env === 'object' && env !== null
      ? (Reflect.get(env, 'incoming') as Partial<IncomingMessage> | undefined)
      : undefined;
  if (typeof incoming?.headersDistinct === 'object' && incoming.headersDistinct !== null) {
    return incoming.headersDistinct[IDEMPOTENCY_KEY_HEADER];
  }
  return c.req.header(IDEMPOTENCY_KEY_HEADER);
}

/**
 * The body's bytes, leaving the body for the handler. An untouched request is cloned, so that
 * `c.req.json()`, a validator, or a handler that passes `c.req.raw` on all still read it. When a
 * validator before this middleware already read it, Hono's cached copy is used.
 */
async function requestBodyBytes(c: Context): Promise<Uint8Array> {
  const { raw } = c.req;
  const cached = Object.keys(c.req.bodyCache).length > 0;
  const buffer =
    cached || raw.bodyUsed ? await c.req.arrayBuffer() : await raw.clone().arrayBuffer();
  return new Uint8Array(buffer);
}

/**
 * The body as the fingerprint counts it: a JSON value when it is JSON (so key order and
 * whitespace do not matter), its bytes otherwise, `undefined` when empty. Bytes that are not
 * UTF-8 are never decoded: two different byte strings must not become the same text.
 */
function parsedBody(contentType: string | undefined, bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) return undefined;
  const mediaType = contentType?.split(';')[0]?.trim() ?? '';
  if (!JSON_MEDIA_TYPE.test(mediaType)) return bytes;
  try {
    return JSON.parse(strictUtf8.decode(bytes)) as unknown;
  } catch {
    return bytes;
  }
}
