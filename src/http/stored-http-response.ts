import { z } from 'zod';

/** A response as the adapters capture it: status, headers (lower-case names) and body bytes. */
export interface HttpResponseSnapshot {
  status: number;
  headers: Record<string, string | readonly string[]>;
  body: Uint8Array;
}

/**
 * How a response is stored in the ledger (a JSON value). A body that is UTF-8 text is stored as
 * text, readable with SQL; any other body as base64. Either way a replay sends the same bytes.
 */
const storedSchema = z.strictObject({
  status: z.int().min(100).max(999),
  headers: z.record(z.string(), z.union([z.string(), z.array(z.string())])),
  body: z.string(),
  encoding: z.enum(['utf8', 'base64']),
});

type StoredHttpResponse = z.infer<typeof storedSchema>;

/**
 * The core's `responseSchema` for HTTP routes: it turns the stored JSON back into a snapshot, and
 * refuses (`StoredResponseInvalidError`) a stored value of another shape, such as one that a
 * non-HTTP call stored under the same scope.
 */
export const storedHttpResponseSchema = storedSchema.transform(
  (stored): HttpResponseSnapshot => ({
    status: stored.status,
    headers: stored.headers,
    body:
      stored.encoding === 'utf8'
        ? Buffer.from(stored.body, 'utf8')
        : Buffer.from(stored.body, 'base64'),
  }),
);

/** The stored form of `response`: the headers in `storedHeaders`, and `Content-Encoding` always. */
export function toStoredHttpResponse(
  response: HttpResponseSnapshot,
  storedHeaders: ReadonlySet<string>,
): StoredHttpResponse {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    // Content-Encoding says how to read the stored bytes (a compression layer ran before the
    // capture): it is part of the body, so it is kept with it whatever the allowlist says.
    if (storedHeaders.has(name.toLowerCase()) || name.toLowerCase() === 'content-encoding') {
      headers[name.toLowerCase()] = typeof value === 'string' ? value : [...value];
    }
  }
  const bytes = Buffer.from(
    response.body.buffer,
    response.body.byteOffset,
    response.body.byteLength,
  );
  const text = bytes.toString('utf8');
  // Valid UTF-8 survives the round trip; NUL is kept out of the json column's text.
  const isText =
    !text.includes('\0') &&
    Buffer.byteLength(text, 'utf8') === bytes.length &&
    Buffer.from(text, 'utf8').equals(bytes);
  return isText
    ? { status: response.status, headers, body: text, encoding: 'utf8' }
    : { status: response.status, headers, body: bytes.toString('base64'), encoding: 'base64' };
}
