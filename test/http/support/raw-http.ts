import { connect } from 'node:net';

/** A response as it came off the socket. */
export interface RawResponse {
  /** Every byte the server sent. */
  raw: Buffer;
  status: number;
  statusMessage: string;
  /** Header lines in the order sent, names lower case, repeated names repeated. */
  headers: [string, string][];
  body: Buffer;
  /** The values of one header, in order. */
  values(name: string): string[];
}

export interface RawRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string | readonly string[]>;
  body?: string | Buffer;
}

/** Longest wait for a whole response: a handler that never answers fails the test, not the run. */
const RESPONSE_TIMEOUT_MS = 30_000;

/**
 * Sends one HTTP/1.1 request on a fresh connection (`Connection: close`) and reads the response
 * to the end of the connection, so a test can compare two responses byte for byte.
 */
export function rawRequest(port: number, request: RawRequest = {}): Promise<RawResponse> {
  const { method = 'POST', path = '/payments', headers = {}, body } = request;
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const lines = [`${method} ${path} HTTP/1.1`, `host: 127.0.0.1:${port}`, 'connection: close'];
  for (const [name, value] of Object.entries(headers)) {
    for (const one of [value].flat()) lines.push(`${name}: ${one}`);
  }
  if (body !== undefined) lines.push(`content-length: ${payload.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.concat([head, payload])));
    socket.setTimeout(RESPONSE_TIMEOUT_MS, () =>
      socket.destroy(new Error(`no whole response within ${RESPONSE_TIMEOUT_MS} ms`)),
    );
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    });
  });
}

function parseResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete response head in ${raw.length} bytes`);
  const [statusLine = '', ...headerLines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(statusLine);
  if (!match) throw new Error(`not a status line: ${statusLine}`);
  const headers = headerLines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  const values = (name: string) => headers.filter(([n]) => n === name).map(([, v]) => v);
  const rest = raw.subarray(end + 4);
  const body = values('transfer-encoding').includes('chunked') ? dechunk(rest) : rest;
  const length = values('content-length')[0];
  if (length !== undefined && Number(length) !== body.length) {
    throw new Error(`content-length ${length}, but ${body.length} body bytes`);
  }
  return {
    raw,
    status: Number(match[1]),
    statusMessage: match[2] ?? '',
    headers,
    body,
    values,
  };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', offset);
    const size = Number.parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!(size > 0)) return Buffer.concat(parts);
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}
