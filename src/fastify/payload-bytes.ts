import type { FastifyReply } from 'fastify';

/** The body bytes of a payload as it reached the last onSend hook, or `overflowed`. */
export type PayloadBytes = { overflowed: false; body: Buffer } | { overflowed: true };

/**
 * Reads what Fastify was about to write: a string or Buffer (serialized JSON included), `null` or
 * `undefined` (no body), a Node or web stream, or a fetch `Response` (whose status and headers are
 * set on `reply` first, as Fastify would do when sending it). Stops reading past `maxBytes`.
 */
export async function payloadBytes(
  reply: FastifyReply,
  payload: unknown,
  maxBytes: number,
): Promise<PayloadBytes> {
  let body = payload;
  if (isFetchResponse(body)) {
    reply.code(body.status);
    for (const [name, value] of body.headers) reply.header(name, value);
    body = body.body;
  }
  if (body === undefined || body === null) return { overflowed: false, body: Buffer.alloc(0) };
  if (typeof body === 'string') return limited(Buffer.from(body, 'utf8'), maxBytes);
  if (body instanceof Uint8Array) return limited(asBuffer(body), maxBytes);
  if (isAsyncIterable(body)) return readStream(body, maxBytes);
  throw new TypeError(`idempotency-ledger/fastify cannot store a ${typeof body} response payload`);
}

async function readStream(stream: AsyncIterable<unknown>, maxBytes: number): Promise<PayloadBytes> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop early destroys a Node stream and cancels a web stream: nothing is left open.
  for await (const chunk of stream) {
    const bytes =
      typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : asBuffer(chunk as Uint8Array);
    size += bytes.length;
    if (size > maxBytes) return { overflowed: true };
    chunks.push(bytes);
  }
  return { overflowed: false, body: Buffer.concat(chunks) };
}

function limited(body: Buffer, maxBytes: number): PayloadBytes {
  return body.length > maxBytes ? { overflowed: true } : { overflowed: false, body };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function isFetchResponse(value: unknown): value is Response {
  return Object.prototype.toString.call(value) === '[object Response]';
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function'
  );
}
