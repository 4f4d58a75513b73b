/**
 * `POST /v1/charges`: creates a charge once per idempotency key, replays its response to every
 * retry, and injects the fault the request asks for or the fault plan picks.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type ChargeRequest,
  fingerprintOf,
  parseChargeRequest,
  readIdempotencyKey,
} from './charge-request.ts';
import type { ChargeStore } from './charge-store.ts';
import { FAULT_HEADER, type Fault, parseFaultHeader } from './fault.ts';
import { errorAnswer, type JsonAnswer, readJsonBody, send } from './http-io.ts';
import type { StatsCounter } from './stats.ts';

/** What the endpoint needs from the provider it runs in. */
export interface ChargeContext {
  store: ChargeStore;
  stats: StatsCounter;
  /** The fault plan's pick for the next request with `key`. */
  faultFor(key: string): Fault | undefined;
  /** Keys whose first request is being processed (in a `slow` fault's delay), by request. */
  holds: Map<string, string>;
  /** Persists the state, if the provider has a state file. */
  save(): void;
  /** Resolves `true` after `delayMs`, or `false` as soon as the provider closes. */
  delay(delayMs: number): Promise<boolean>;
}

/** Answers one `POST /v1/charges`. */
export async function handleCharge(
  context: ChargeContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { stats } = context;
  const requestId = `req_${randomBytes(8).toString('hex')}`;
  res.setHeader('request-id', requestId);
  const key = readIdempotencyKey(req.headersDistinct['idempotency-key']);
  const body = await readJsonBody(req);
  if (typeof key !== 'string') {
    stats.countMissingKey();
    context.save();
    return send(res, missingKey(key));
  }
  stats.count(key, 'requests');
  const request = validate(req, body);
  if (!request.ok) {
    stats.count(key, 'invalid');
    context.save();
    return send(res, request.answer);
  }
  const fault = request.fault ?? context.faultFor(key);
  if (fault) stats.countFault(key, fault.mode);
  context.save();

  if (fault?.mode === 'fail-5xx') return send(res, injectedError(fault));
  // Never answered: the connection stays open until the client or the provider closes it.
  if (fault?.mode === 'timeout') return;
  if (fault?.mode === 'slow') {
    // The delay stands for the time the charge takes: the key is in use meanwhile.
    const holding = !context.holds.has(key) && !context.store.get(key);
    if (holding) context.holds.set(key, requestId);
    const elapsed = await context.delay(fault.delayMs);
    if (holding) context.holds.delete(key);
    if (!elapsed) return;
  }

  const answer = processCharge(context, key, request.value, requestId);
  context.save();
  if (fault?.mode === 'charge-then-drop') {
    req.socket.destroy();
    return;
  }
  if (fault?.mode === 'fail-after-charge-5xx') return send(res, injectedError(fault));
  send(res, answer);
}

/**
 * The request's outcome, synchronous from lookup to storage: no other request can come between,
 * so a key gets one charge however many requests race for it.
 */
function processCharge(
  context: ChargeContext,
  key: string,
  request: ChargeRequest,
  requestId: string,
): JsonAnswer {
  const { store, stats } = context;
  const stored = store.get(key);
  if (stored) {
    if (stored.fingerprint !== fingerprintOf(request)) {
      stats.count(key, 'mismatches');
      return errorAnswer(422, {
        type: 'idempotency_error',
        code: 'idempotency_key_reused',
        message:
          'Keys for idempotent requests can only be used with the same parameters they were first used with',
      });
    }
    stats.count(key, 'replays');
    return {
      status: stored.status,
      body: stored.body,
      headers: { 'idempotent-replayed': 'true', 'original-request': stored.requestId },
    };
  }
  const holder = context.holds.get(key);
  if (holder !== undefined && holder !== requestId) {
    stats.count(key, 'inProgress');
    return errorAnswer(409, {
      type: 'idempotency_error',
      code: 'idempotency_key_in_use',
      message: 'A request with this idempotency key is still being processed; retry later',
    });
  }
  const created = store.create(key, request, requestId);
  stats.countCharge(key, created.charge);
  return { status: created.status, body: created.body };
}

type Validated =
  | { ok: true; value: ChargeRequest; fault: Fault | undefined }
  | { ok: false; answer: JsonAnswer };

function validate(req: IncomingMessage, body: Awaited<ReturnType<typeof readJsonBody>>): Validated {
  if (!body.ok) return body;
  const parsed = parseChargeRequest(body.value);
  if (!parsed.ok) return { ok: false, answer: invalidRequest(parsed.message) };
  const header = req.headers[FAULT_HEADER];
  if (header === undefined) return { ok: true, value: parsed.request, fault: undefined };
  const fault = parseFaultHeader(header as string);
  if (!fault.ok) return { ok: false, answer: invalidRequest(`Provider-Fault: ${fault.message}`) };
  return { ok: true, value: parsed.request, fault: fault.fault };
}

function invalidRequest(message: string): JsonAnswer {
  return errorAnswer(400, { type: 'invalid_request_error', code: 'parameter_invalid', message });
}

function missingKey(key: null | undefined): JsonAnswer {
  // The message never quotes the header: a key is the caller's secret.
  return errorAnswer(400, {
    type: 'invalid_request_error',
    code: key === undefined ? 'idempotency_key_required' : 'idempotency_key_invalid',
    message:
      key === undefined
        ? 'This provider requires an Idempotency-Key header on every charge'
        : 'The Idempotency-Key header must be sent once, as 1 to 255 printable ASCII characters',
  });
}

function injectedError(fault: { mode: string; status?: 500 | 503 }): JsonAnswer {
  return errorAnswer(fault.status ?? 500, {
    type: 'api_error',
    message: `Injected fault: ${fault.mode}`,
  });
}
