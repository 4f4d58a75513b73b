/**
 * The faults the provider can inject into one `POST /v1/charges`, and the `Provider-Fault`
 * request header that asks for one.
 */
import { z } from 'zod';
import { describeIssues } from './describe-issues.ts';

/** The request header that injects a fault into this one request, ahead of any fault plan. */
export const FAULT_HEADER = 'provider-fault';

const MAX_DELAY_MS = 60_000;

/**
 * One fault. Faults act either before the charge is processed (nothing happened) or after it
 * (the charge, or the replay of an earlier one, did happen):
 *
 * - `slow`: waits `delayMs`, then processes and answers normally. The request holds its key
 *   while it waits: a request with the same key meanwhile gets 409 `idempotency_key_in_use`.
 *   The charge is made even if the client gave up waiting.
 * - `fail-5xx`: answers `status` (500 or 503; 500 by default) without processing: no charge.
 * - `timeout`: reads the request and never answers (until the client or the provider closes
 *   the connection): no charge.
 * - `charge-then-drop`: processes the request (a charge is made, or an earlier one replayed),
 *   then destroys the socket without answering. A retry with the same key replays the charge.
 * - `fail-after-charge-5xx`: processes the request, then answers `status` (500 by default)
 *   instead of the result. The result stays stored: a retry with the same key replays it.
 */
export type Fault =
  | { mode: 'slow'; delayMs: number }
  | { mode: 'fail-5xx'; status?: 500 | 503 }
  | { mode: 'timeout' }
  | { mode: 'charge-then-drop' }
  | { mode: 'fail-after-charge-5xx'; status?: 500 | 503 };

export type FaultMode = Fault['mode'];

export const FAULT_MODES: readonly FaultMode[] = [
  'slow',
  'fail-5xx',
  'timeout',
  'charge-then-drop',
  'fail-after-charge-5xx',
];

const serverErrorStatus = z.union([z.literal(500), z.literal(503)]).optional();

/** Validates a {@link Fault}, as it arrives in a fault plan or a `Provider-Fault` header. */
export const faultSchema: z.ZodType<Fault> = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('slow'), delayMs: z.int().min(0).max(MAX_DELAY_MS) }),
  z.strictObject({ mode: z.literal('fail-5xx'), status: serverErrorStatus }),
  z.strictObject({ mode: z.literal('timeout') }),
  z.strictObject({ mode: z.literal('charge-then-drop') }),
  z.strictObject({ mode: z.literal('fail-after-charge-5xx'), status: serverErrorStatus }),
]);

/**
 * Writes a fault as a `Provider-Fault` header value: the mode, then `; name=value` parameters.
 *
 * @example
 * ```ts
 * formatFaultHeader({ mode: 'slow', delayMs: 200 }); // 'slow; delayMs=200'
 * formatFaultHeader({ mode: 'charge-then-drop' }); // 'charge-then-drop'
 * ```
 */
export function formatFaultHeader(fault: Fault): string {
  const { mode, ...parameters } = fault;
  return [mode, ...Object.entries(parameters).map(([name, value]) => `${name}=${value}`)].join(
    '; ',
  );
}

/**
 * Reads a `Provider-Fault` header value (see {@link formatFaultHeader}).
 *
 * @returns the fault, or a message saying what is wrong with the value.
 *
 * @example
 * ```ts
 * parseFaultHeader('fail-5xx; status=503'); // { ok: true, fault: { mode: 'fail-5xx', status: 503 } }
 * ```
 */
export function parseFaultHeader(
  value: string,
): { ok: true; fault: Fault } | { ok: false; message: string } {
  const [mode, ...parameters] = value.split(';').map((part) => part.trim());
  const fault: Record<string, unknown> = { mode };
  for (const parameter of parameters) {
    const match = /^([A-Za-z]+)=(\d+)$/.exec(parameter);
    if (!match) return { ok: false, message: `malformed parameter "${parameter}"` };
    fault[match[1] as string] = Number(match[2]);
  }
  const result = faultSchema.safeParse(fault);
  return result.success
    ? { ok: true, fault: result.data }
    : { ok: false, message: describeIssues(result.error) };
}
