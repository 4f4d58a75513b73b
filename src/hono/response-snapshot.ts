import type { HttpResponseSnapshot } from '../http/index.ts';

// Statuses whose responses have no body: the Fetch API refuses to build one with a body.
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * The handler's response, read to the end: status, headers (lower-case names, `Set-Cookie` as its
 * list of values) and body bytes. `undefined` when the body is larger than `maxBytes`; the rest of
 * the body is then cancelled rather than read.
 */
export async function readResponse(
  response: Response,
  maxBytes: number,
): Promise<HttpResponseSnapshot | undefined> {
  const body = await readBody(response.body, maxBytes);
  if (body === undefined) return undefined;
  return { status: response.status, headers: headersRecord(response.headers), body };
}

/**
 * A Fetch `Response` with a snapshot's status, headers and body; `base` holds headers it starts
 * from (those set before the handler ran), which the snapshot's own headers replace.
 */
export function responseFromSnapshot(snapshot: HttpResponseSnapshot, base?: Headers): Response {
  const headers = new Headers(base);
  for (const [name, value] of Object.entries(snapshot.headers)) {
    headers.delete(name);
    for (const item of typeof value === 'string' ? [value] : value) headers.append(name, item);
  }
  const body = NULL_BODY_STATUSES.has(snapshot.status) ? null : snapshot.body;
  return new Response(body, { status: snapshot.status, headers });
}

async function readBody(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  if (stream === null) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!(value instanceof Uint8Array)) {
      cancel(reader);
      throw new TypeError('The response body stream must produce Uint8Array chunks');
    }
    size += value.byteLength;
    if (size > maxBytes) {
      cancel(reader);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Not awaited: a stream's cancel() waits on its source, which need not ever settle. */
function cancel(reader: ReadableStreamDefaultReader<unknown>): void {
  reader.cancel().catch(() => {});
}

/** Header names are lower case already (the Fetch API's); `Set-Cookie` keeps its values apart. */
function headersRecord(headers: Headers): Record<string, string | readonly string[]> {
  const record: Record<string, string | readonly string[]> = {};
  for (const [name, value] of headers) {
    if (name !== 'set-cookie') record[name] = value;
  }
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) record['set-cookie'] = cookies;
  return record;
}
