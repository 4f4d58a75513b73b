import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HttpResponseSnapshot } from './stored-http-response.ts';

/** A response being buffered instead of sent; see {@link captureServerResponse}. */
export interface ResponseCapture {
  /** What the handler sent, once it ended the response; `undefined` until then. */
  snapshot(): HttpResponseSnapshot | undefined;
  /** True once the body grew past the limit (the rest was dropped). */
  readonly overflowed: boolean;
  /** Puts the response's own methods back, so that it can be sent. */
  release(): void;
}

type Callback = (error?: Error | null) => void;
const METHODS = ['writeHead', 'write', 'end', 'flushHeaders'] as const;

/**
 * Buffers what a handler writes to a Node `ServerResponse` (`res.writeHead`, `write`, `end`, and
 * so everything Express builds on them) instead of sending it, so that the response can be
 * committed with the handler's writes before the client sees a byte. Headers stay on `res`, where
 * the handler set them. A handler can pipe into `res` (`await pipeline(source, res)`): the
 * 'finish' listeners it adds are called once it ends the response; those added before the capture
 * began wait for the response to be sent.
 *
 * @param maxBytes - Body bytes kept; beyond them the capture reports `overflowed`.
 *
 * @example
 * ```ts
 * const capture = captureServerResponse(res, 1024 * 1024);
 * await handler(req, res);
 * capture.release();
 * const response = capture.snapshot(); // then store it, commit, and send it
 * ```
 */
export function captureServerResponse(res: ServerResponse, maxBytes: number): ResponseCapture {
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  let overflowed = false;
  // Another layer (compression middleware) may have replaced a method on the instance already:
  // releasing puts back exactly what was there.
  const previous = METHODS.map(
    (name) => [name, Object.getOwnPropertyDescriptor(res, name)] as const,
  );
  // 'finish' listeners already there (a logger's, a framework's) wait for the real end of the
  // response. Those the handler adds while it writes (`await pipeline(source, res)` waits for
  // 'finish') are told when it ends the buffered response: otherwise the handler would wait for
  // an end that comes only after it returns, holding its transaction open for ever.
  const finishListenersBefore = new Set(res.rawListeners('finish'));
  const finishForHandler = () => {
    for (const listener of res.rawListeners('finish')) {
      if (finishListenersBefore.has(listener)) continue;
      res.removeListener('finish', listener as Callback);
      (listener as Callback).call(res);
    }
  };

  const append = (chunk: unknown, encoding: unknown) => {
    // Once ended, a response takes no more data: Node would not send it, so it is not stored.
    if (ended || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const bytes =
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk as Uint8Array);
    size += bytes.length;
    if (size > maxBytes) overflowed = true;
    else chunks.push(bytes);
  };
  const callLater = (callback: unknown) => {
    if (typeof callback === 'function') process.nextTick(callback as Callback);
  };

  const replacements = {
    writeHead(status: number, ...rest: unknown[]) {
      res.statusCode = status;
      const [first, second] = rest;
      if (typeof first === 'string') res.statusMessage = first;
      setHeaders(res, typeof first === 'string' ? second : first);
      return res;
    },
    write(chunk: unknown, encoding?: unknown, callback?: unknown) {
      append(chunk, encoding);
      callLater(typeof encoding === 'function' ? encoding : callback);
      return true;
    },
    end(chunk?: unknown, encoding?: unknown, callback?: unknown) {
      append(chunk, encoding);
      ended = true;
      callLater([chunk, encoding, callback].find((arg) => typeof arg === 'function'));
      process.nextTick(finishForHandler);
      return res;
    },
    flushHeaders() {},
  };
  Object.assign(res, replacements);

  return {
    snapshot: () =>
      ended
        ? { status: res.statusCode, headers: headersOf(res), body: Buffer.concat(chunks) }
        : undefined,
    get overflowed() {
      return overflowed;
    },
    release() {
      for (const [name, descriptor] of previous) {
        if (descriptor) Object.defineProperty(res, name, descriptor);
        else Reflect.deleteProperty(res, name);
      }
    },
  };
}

/** Sends a snapshot on `res`: status, its headers (on top of those already set) and body. */
export function sendSnapshot(res: ServerResponse, response: HttpResponseSnapshot): void {
  res.statusCode = response.status;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
  res.end(response.body);
}

/** The headers set on `res`, lower-case names, values as strings. */
export function headersOf(res: ServerResponse): Record<string, string | readonly string[]> {
  const headers: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(res.getHeaders())) {
    if (value !== undefined) headers[name] = typeof value === 'number' ? String(value) : value;
  }
  return headers;
}

/** What a handler can change on `res` before it sends a byte: status line and headers. */
export interface ResponseState {
  statusCode: number;
  statusMessage: string | undefined;
  headers: Record<string, string | readonly string[]>;
}

/** `res`'s status line and headers as they are now, to put back with {@link restoreResponse}. */
export function saveResponse(res: ServerResponse): ResponseState {
  // statusMessage is undefined until someone sets it: Node then uses the status's standard text.
  const statusMessage = res.statusMessage as string | undefined;
  return { statusCode: res.statusCode, statusMessage, headers: headersOf(res) };
}

/** Puts `res`'s status line and headers back as {@link saveResponse} found them. */
export function restoreResponse(res: ServerResponse, state: ResponseState): void {
  res.statusCode = state.statusCode;
  res.statusMessage = state.statusMessage as string;
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  for (const [name, value] of Object.entries(state.headers)) res.setHeader(name, value);
}

function setHeaders(res: ServerResponse, headers: unknown): void {
  if (Array.isArray(headers)) {
    // writeHead's flat form, [name, value, name, value, ...], read as Node reads it: each name it
    // lists replaces what was set before, and a name listed twice is sent twice.
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i]) res.removeHeader(String(headers[i]));
    }
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i]) res.appendHeader(String(headers[i]), headers[i + 1] as string | string[]);
    }
  } else if (headers && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
      if (value !== undefined) res.setHeader(name, value);
    }
  }
}
