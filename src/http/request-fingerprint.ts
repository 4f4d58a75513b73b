import { createHash } from 'node:crypto';
import type { FingerprintChoice } from './http-idempotency-options.ts';

/** What an adapter knows of a request, framework-neutral. */
export interface HttpRequestFacts {
  /** `POST`, `PUT`... */
  method: string;
  /** The request target as received: path and query, e.g. `/payments?expand=customer`. */
  target: string;
  /** Every value the `Idempotency-Key` header was sent with (undefined when absent). */
  keyHeader: string | readonly string[] | undefined;
  /**
   * The body: parsed (a JSON value) when the framework parsed it, or its bytes (a `Uint8Array` or
   * other view, an `ArrayBuffer`) or text; `undefined` when there is none.
   */
  body: unknown;
  /** A request header's value, by lower-case name. */
  header(name: string): string | undefined;
}

/**
 * The JSON value whose fingerprint stands for the request: method, target and body (plus the
 * headers `choice` names). A key sent again with any of them different is refused (422).
 *
 * A parsed body counts as canonical JSON (key order and whitespace do not matter); bytes and text
 * count by their SHA-256, so a text and its UTF-8 bytes are the same body. No body (`undefined`)
 * differs from a JSON `null` and from an empty text.
 *
 * @example
 * ```ts
 * const request = httpRequestFingerprint(
 *   { method: 'POST', target: '/payments', keyHeader: 'k', body: { amount: 1 }, header: () => undefined },
 *   {},
 * );
 * ```
 */
export function httpRequestFingerprint(
  facts: HttpRequestFacts,
  choice: FingerprintChoice,
): unknown {
  const body = choice.body ? choice.body(facts.body) : facts.body;
  const headers = choice.headers?.map((name) => [
    name.toLowerCase(),
    facts.header(name.toLowerCase()) ?? null,
  ]);
  return {
    method: facts.method.toUpperCase(),
    target: facts.target,
    body: bodyMaterial(body),
    ...(headers ? { headers } : {}),
  };
}

function bodyMaterial(body: unknown): unknown {
  // No body at all; a JSON `null` body is a value like any other, so another request.
  if (body === undefined) return null;
  if (typeof body === 'string') return { sha256: sha256(Buffer.from(body, 'utf8')) };
  // Any view of bytes (a Buffer, a DataView...), counting only the bytes it covers.
  if (ArrayBuffer.isView(body)) {
    return { sha256: sha256(new Uint8Array(body.buffer, body.byteOffset, body.byteLength)) };
  }
  if (body instanceof ArrayBuffer) return { sha256: sha256(new Uint8Array(body)) };
  return { json: body };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
