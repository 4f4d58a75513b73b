import http from 'node:http';
import https from 'node:https';
import type { ResolvedContractOptions } from './contract-options.ts';
import type { ContractResponse } from './contract-response.ts';

/** One request to the endpoint under test. */
export interface ContractRequest {
  /** The `Idempotency-Key` header's values: none, one, or several (the header sent repeatedly). */
  keys: readonly string[];
  /** The JSON body. */
  body: unknown;
}

/** An error response the kit received, with the keys its request carried. */
export interface ErrorResponseSeen {
  keys: readonly string[];
  response: ContractResponse;
}

/** Holds each request's body back until every request of a group has its connection. */
interface Gate {
  arrive(): void;
  opened: Promise<void>;
}

/**
 * Sends the kit's requests with `node:http` rather than `fetch`: `fetch` joins a repeated header
 * into one value and decompresses bodies, and the kit needs the header sent twice and the bytes
 * as they were sent. Connections are not kept alive, so no socket outlives a run and none is
 * reused after the server was killed.
 */
export class ContractClient {
  /** Changes when the server is restarted on another port. */
  baseUrl: string;
  /** Every 4xx and 5xx answer to a request that carried a key, for the key-echo check. */
  readonly errorResponses: ErrorResponseSeen[] = [];
  readonly #options: ResolvedContractOptions;
  readonly #agents = {
    'http:': new http.Agent({ keepAlive: false }),
    'https:': new https.Agent({ keepAlive: false }),
  };

  constructor(options: ResolvedContractOptions) {
    this.#options = options;
    this.baseUrl = options.baseUrl;
  }

  /** Sends one request and reads the whole response. Rejects on a network error or `signal`. */
  send(request: ContractRequest, signal: AbortSignal, gate?: Gate): Promise<ContractResponse> {
    const url = new URL(`${this.baseUrl}${this.#options.path}`);
    const payload = Buffer.from(JSON.stringify(request.body), 'utf8');
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<ContractResponse>((resolve, reject) => {
      const req = transport.request(url, {
        method: this.#options.method,
        agent: url.protocol === 'https:' ? this.#agents['https:'] : this.#agents['http:'],
        signal,
        headers: {
          'content-type': 'application/json',
          ...this.#options.headers,
          'content-length': payload.length,
        },
      });
      if (request.keys.length === 1) req.setHeader('Idempotency-Key', request.keys[0] as string);
      // An array makes Node send one header line per value: the header really is repeated.
      if (request.keys.length > 1) req.setHeader('Idempotency-Key', [...request.keys]);
      req.once('error', reject);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('error', reject);
        res.once('close', () => {
          if (!res.complete) {
            reject(new Error('the connection closed before the response body ended'));
            return;
          }
          const response = {
            status: res.statusCode ?? 0,
            headers: definedHeaders(res.headersDistinct),
            body: Buffer.concat(chunks),
          };
          if (response.status >= 400 && request.keys.length > 0) {
            this.errorResponses.push({ keys: request.keys, response });
          }
          resolve(response);
        });
      });
      if (!gate) {
        req.end(payload);
        return;
      }
      let arrived = false;
      const arrive = () => {
        if (arrived) return;
        arrived = true;
        gate.arrive();
      };
      req.once('error', arrive);
      req.once('socket', (socket) => {
        if (socket.connecting) socket.once('connect', arrive);
        else arrive();
      });
      req.flushHeaders();
      void gate.opened.then(() => {
        if (!req.destroyed) req.end(payload);
      });
    });
  }

  /**
   * Sends `requests` so that they reach the server together: each opens its connection and sends
   * its headers, and the bodies go out once every connection is open. Servers read the body before
   * they run the handler, so the handlers start within a moment of each other.
   */
  sendTogether(
    requests: readonly ContractRequest[],
    signal: AbortSignal,
  ): Promise<PromiseSettledResult<ContractResponse>[]> {
    let waiting = requests.length;
    let open!: () => void;
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    const gate: Gate = {
      arrive: () => {
        waiting -= 1;
        if (waiting === 0) open();
      },
      opened,
    };
    return Promise.allSettled(requests.map((request) => this.send(request, signal, gate)));
  }

  /** Closes every connection still open. */
  close(): void {
    this.#agents['http:'].destroy();
    this.#agents['https:'].destroy();
  }
}

function definedHeaders(headers: NodeJS.Dict<string[]>): Record<string, readonly string[]> {
  const defined: Record<string, readonly string[]> = {};
  for (const [name, values] of Object.entries(headers)) if (values) defined[name] = values;
  return defined;
}
