/** Reading a JSON request body and writing JSON answers, with node:http alone. */
import type { IncomingMessage, ServerResponse } from 'node:http';

const MAX_BODY_BYTES = 64 * 1024;

/** A JSON answer: the text is sent as is, so stored responses replay byte for byte. */
export interface JsonAnswer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** An error object as Stripe shapes them: `{ error: { type, code?, message } }`. */
export function errorAnswer(
  status: number,
  error: { type: string; code?: string; message: string },
): JsonAnswer {
  return { status, body: JSON.stringify({ error }) };
}

export function send(res: ServerResponse, answer: JsonAnswer): void {
  res
    .writeHead(answer.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(answer.body),
      ...answer.headers,
    })
    .end(answer.body);
}

/**
 * Reads and parses the request's JSON body.
 *
 * @returns the value, or the 400/413 that answers the request.
 */
export async function readJsonBody(
  req: IncomingMessage,
): Promise<{ ok: true; value: unknown } | { ok: false; answer: JsonAnswer }> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Read to the end even past the limit: a request left half read could not be answered.
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  }
  if (size > MAX_BODY_BYTES) {
    return {
      ok: false,
      answer: errorAnswer(413, {
        type: 'invalid_request_error',
        message: `The body must be at most ${MAX_BODY_BYTES} bytes`,
      }),
    };
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch {
    return {
      ok: false,
      answer: errorAnswer(400, { type: 'invalid_request_error', message: 'The body must be JSON' }),
    };
  }
}
