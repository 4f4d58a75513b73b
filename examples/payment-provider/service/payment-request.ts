/** `POST /payments`'s body, validated before the operation starts. */
import { z } from 'zod';

const paymentRequestSchema = z.strictObject({
  amount_cents: z.int().min(1).max(99_999_999),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as EUR'),
  customer: z.string().regex(/^[\x20-\x7e]{1,100}$/, 'must be 1 to 100 printable ASCII characters'),
});

/** A payment to make: the provider's charge parameters. */
export type PaymentRequest = z.infer<typeof paymentRequestSchema>;

/**
 * Parses and validates the body's text: the request, or what is wrong with it (for a 400).
 *
 * @example
 * ```ts
 * parsePaymentRequest('{"amount_cents":1999,"currency":"EUR","customer":"cus_42"}');
 * // { ok: true, request: { amount_cents: 1999, currency: 'EUR', customer: 'cus_42' } }
 * ```
 */
export function parsePaymentRequest(
  text: string,
): { ok: true; request: PaymentRequest } | { ok: false; detail: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, detail: 'The request body is not JSON' };
  }
  const result = paymentRequestSchema.safeParse(json);
  if (result.success) return { ok: true, request: result.data };
  const issues = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
  return { ok: false, detail: issues.join('; ') };
}
