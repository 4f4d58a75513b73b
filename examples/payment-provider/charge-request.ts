/**
 * `POST /v1/charges`'s request: the idempotency key, the body, and the rules of this fake card
 * network (which cards are declined).
 */
import { z } from 'zod';
import { describeIssues } from './describe-issues.ts';

/** The amount that is always declined, as Stripe's test card `4000 0000 0000 0002` is. */
export const DECLINED_AMOUNT_CENTS = 4_000_002;
/** The customer whose charges are always declined. */
export const DECLINED_CUSTOMER = 'declined';

/** The body of `POST /v1/charges`. */
export interface ChargeRequest {
  amount_cents: number;
  currency: string;
  customer: string;
}

/** A charge as the provider answers it (in a 200, or inside a 402's error). */
export interface Charge extends ChargeRequest {
  id: string;
  status: 'succeeded' | 'declined';
  /** Unix time in seconds, as Stripe's `created`. */
  created: number;
}

const chargeRequestSchema = z.strictObject({
  amount_cents: z.int().min(1).max(99_999_999),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as EUR'),
  customer: z.string().regex(/^[\x20-\x7e]{1,100}$/, 'must be 1 to 100 printable ASCII characters'),
});

/**
 * Validates a parsed JSON body.
 *
 * @example
 * ```ts
 * parseChargeRequest({ amount_cents: 500, currency: 'EUR', customer: 'cus_1' }); // { ok: true, request }
 * ```
 */
export function parseChargeRequest(
  body: unknown,
): { ok: true; request: ChargeRequest } | { ok: false; message: string } {
  const result = chargeRequestSchema.safeParse(body);
  return result.success
    ? { ok: true, request: result.data }
    : { ok: false, message: describeIssues(result.error) };
}

/**
 * What makes two requests with one key "the same request": their parameters, in a fixed order,
 * so that a retry whose JSON lists them in another order (or spaces them otherwise) still
 * replays, as Stripe compares parameters rather than bytes.
 */
export function fingerprintOf(request: ChargeRequest): string {
  return JSON.stringify([request.amount_cents, request.currency, request.customer]);
}

/**
 * Reads the `Idempotency-Key` header as Stripe does: the bare value, 1 to 255 printable ASCII
 * characters. A header sent twice is refused rather than guessed at.
 *
 * @returns the key; `undefined` when it is missing; `null` when it is repeated or malformed.
 */
export function readIdempotencyKey(
  values: readonly string[] | undefined,
): string | null | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) return null;
  const key = (values[0] as string).trim();
  return /^[\x20-\x7e]{1,255}$/.test(key) ? key : null;
}

/** Whether the fake card network declines this charge. */
export function isDeclined(request: ChargeRequest): boolean {
  return request.amount_cents === DECLINED_AMOUNT_CENTS || request.customer === DECLINED_CUSTOMER;
}
