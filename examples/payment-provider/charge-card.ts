/**
 * A client of the provider's `POST /v1/charges` that says what a caller may conclude from each
 * outcome: charged, declined, not charged (retry), or unknown (it may have been charged: retry
 * with the same key, never with a new one).
 */
import { request } from 'node:http';
import type { Charge, ChargeRequest } from './charge-request.ts';
import { FAULT_HEADER, type Fault, formatFaultHeader } from './fault.ts';

/**
 * What a failed call means for the charge:
 *
 * - `retryable`: the charge was not made by this call (the connection was refused before
 *   anything was sent; 409, the key's first request is still running; 429). Retry with the same
 *   key.
 * - `unknown`: the charge may or may not have been made (a 5xx, a timeout, a connection lost
 *   after the request was sent, a garbled answer). A 5xx is ambiguous in general: a provider
 *   may fail after charging. Retry with the same key, which replays the charge if it was made;
 *   never switch to a new key or report "not charged".
 * - `rejected`: the request itself is wrong (400, 422: the key was used with another body);
 *   retrying it cannot succeed.
 */
export type PaymentProviderErrorKind = 'retryable' | 'unknown' | 'rejected';

/**
 * A call to the provider that did not end in a charge or a decline. The message never contains
 * the idempotency key.
 */
export class PaymentProviderError extends Error {
  readonly kind: PaymentProviderErrorKind;
  /** The HTTP status, when an answer came. */
  readonly status: number | undefined;
  /** The provider's error code (`idempotency_key_reused`...), or the socket's (`ECONNREFUSED`), or `timeout`, `aborted`. */
  readonly code: string | undefined;

  constructor(options: {
    kind: PaymentProviderErrorKind;
    message: string;
    status?: number;
    code?: string;
    cause?: unknown;
  }) {
    super(options.message, { cause: options.cause });
    this.name = new.target.name;
    this.kind = options.kind;
    this.status = options.status;
    this.code = options.code;
  }
}

export interface ChargeCardOptions extends ChargeRequest {
  /** The idempotency key: every retry of one charge sends the same key and the same body. */
  key: string;
  /** Aborts the call; it then fails as `unknown` if the connection was open, else `retryable`. */
  signal?: AbortSignal;
  /** Gives up waiting for the whole answer after this long (10 000 by default): `unknown`. */
  timeoutMs?: number;
  /** Asks the provider to inject this fault into this request (a `Provider-Fault` header). */
  fault?: Fault;
}

/** A charge made (`succeeded`) or refused by the card network (`declined`): both are final. */
export interface ChargeOutcome {
  kind: 'succeeded' | 'declined';
  charge: Charge;
  /** True when the provider replayed the response of an earlier call with the key. */
  replayed: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Charges a card through the provider at `baseUrl`, once per key.
 *
 * Each call opens its own connection: a kept-alive connection that the provider closed could
 * fail a request it never read, and that failure could not be told from a lost answer.
 *
 * @throws {PaymentProviderError} when the outcome is neither a charge nor a decline; its
 * `kind` says whether the card may have been charged.
 *
 * @example
 * ```ts
 * try {
 *   const { kind, charge } = await chargeCard('http://127.0.0.1:4010', {
 *     key: 'order-17-charge', amount_cents: 1999, currency: 'EUR', customer: 'cus_42', timeoutMs: 2000,
 *   });
 *   // kind: 'succeeded' or 'declined'; charge.id: 'ch_...'
 * } catch (error) {
 *   if (error instanceof PaymentProviderError && error.kind !== 'rejected') {
 *     // retry later with the same key
 *   }
 * }
 * ```
 */
export function chargeCard(baseUrl: string, options: ChargeCardOptions): Promise<ChargeOutcome> {
  const { key, signal, fault } = options;
  const body = JSON.stringify({
    amount_cents: options.amount_cents,
    currency: options.currency,
    customer: options.customer,
  });
  return new Promise((resolve, reject) => {
    let connected = false;
    let settled = false;
    const finish = (outcome: ChargeOutcome | PaymentProviderError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      if (outcome instanceof PaymentProviderError) reject(outcome);
      else resolve(outcome);
    };
    // Before the connection is open nothing can have been sent; after, anything may have been.
    const lost = (code: string, cause: unknown) =>
      finish(
        new PaymentProviderError({
          kind: connected ? 'unknown' : 'retryable',
          message: connected
            ? `The charge request was sent but no answer came (${code}): it may have been made`
            : `The provider could not be reached (${code}): nothing was sent`,
          code,
          cause,
        }),
      );

    const req = request(new URL('/v1/charges', baseUrl), {
      method: 'POST',
      agent: false,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'idempotency-key': key,
        ...(fault ? { [FAULT_HEADER]: formatFaultHeader(fault) } : {}),
      },
    });
    req.once('socket', (socket) => socket.once('connect', () => (connected = true)));
    req.on('error', (error: NodeJS.ErrnoException) => lost(error.code ?? 'error', error));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        finish(classify(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), res.headers)),
      );
      res.on('error', (error: NodeJS.ErrnoException) => lost(error.code ?? 'error', error));
      // The connection closed in the middle of the body.
      res.on('close', () => {
        if (!res.complete) lost('ECONNRESET', undefined);
      });
    });

    const timer = setTimeout(
      () => lost('timeout', undefined),
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    const onAbort = () => lost('aborted', signal?.reason);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    req.end(body);
  });
}

function classify(
  status: number,
  text: string,
  headers: Record<string, string | string[] | undefined>,
): ChargeOutcome | PaymentProviderError {
  const json = parseJson(text);
  const replayed = headers['idempotent-replayed'] === 'true';
  if (status === 200 && isCharge(json) && json.status === 'succeeded') {
    return { kind: 'succeeded', charge: json, replayed };
  }
  const error = errorOf(json);
  if (status === 402 && error?.code === 'card_declined' && isCharge(error.charge)) {
    return { kind: 'declined', charge: error.charge, replayed };
  }
  const code = typeof error?.code === 'string' ? error.code : undefined;
  if (status === 409 || status === 429) {
    return new PaymentProviderError({
      kind: 'retryable',
      message: `The provider answered ${status}: nothing was charged by this call; retry later`,
      status,
      code,
    });
  }
  if (status >= 400 && status < 500) {
    return new PaymentProviderError({
      kind: 'rejected',
      message: `The provider refused the request (${status}${code ? ` ${code}` : ''})`,
      status,
      code,
    });
  }
  return new PaymentProviderError({
    kind: 'unknown',
    message: `The provider answered ${status}: the charge may have been made`,
    status,
    code,
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorOf(json: unknown): Record<string, unknown> | undefined {
  const error = (json as { error?: unknown } | undefined)?.error;
  return typeof error === 'object' && error !== null
    ? (error as Record<string, unknown>)
    : undefined;
}

function isCharge(value: unknown): value is Charge {
  const charge = value as Partial<Charge> | undefined;
  return (
    typeof charge?.id === 'string' &&
    typeof charge.amount_cents === 'number' &&
    (charge.status === 'succeeded' || charge.status === 'declined')
  );
}
