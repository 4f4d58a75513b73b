/**
 * The charges, one per idempotency key, each with the response that answered it: a retry with
 * the key gets these bytes again, as Stripe stores "the status code and body of the first
 * request" whether it succeeded or failed.
 */
import { randomBytes } from 'node:crypto';
import { type Charge, type ChargeRequest, fingerprintOf, isDeclined } from './charge-request.ts';

/** A key's first response, kept to be replayed. */
export interface StoredResponse {
  /** {@link fingerprintOf} the request that created it: a retry must match it. */
  fingerprint: string;
  /** 200 with the charge, or 402 with the decline. */
  status: 200 | 402;
  /** The exact JSON text answered, replayed as is. */
  body: string;
  /** The `Request-Id` of the request that created it, sent back as `Original-Request`. */
  requestId: string;
  charge: Charge;
}

/**
 * The charges in memory; {@link ChargeStore.toJSON} is what a state file keeps.
 *
 * @example
 * ```ts
 * const store = new ChargeStore();
 * const first = store.create('k1', { amount_cents: 500, currency: 'EUR', customer: 'c' }, 'req_1');
 * store.get('k1') === first; // true
 * ```
 */
export class ChargeStore {
  // A Map, not an object: any key, "__proto__" included, is an ordinary entry.
  readonly #responses: Map<string, StoredResponse>;

  constructor(saved: Record<string, StoredResponse> = {}) {
    this.#responses = new Map(Object.entries(saved));
  }

  get(key: string): StoredResponse | undefined {
    return this.#responses.get(key);
  }

  /** Makes the charge for `key` (which must be new) and stores the response that answers it. */
  create(key: string, request: ChargeRequest, requestId: string): StoredResponse {
    if (this.#responses.has(key)) throw new Error('a charge already exists for this key');
    const charge: Charge = {
      id: `ch_${randomBytes(12).toString('hex')}`,
      amount_cents: request.amount_cents,
      currency: request.currency,
      customer: request.customer,
      status: isDeclined(request) ? 'declined' : 'succeeded',
      created: Math.floor(Date.now() / 1000),
    };
    const stored: StoredResponse =
      charge.status === 'succeeded'
        ? {
            fingerprint: fingerprintOf(request),
            status: 200,
            body: JSON.stringify(charge),
            requestId,
            charge,
          }
        : {
            fingerprint: fingerprintOf(request),
            status: 402,
            // Stripe names the declined charge's id; the whole charge is here so that a client
            // has the declined charge without asking for it.
            body: JSON.stringify({
              error: {
                type: 'card_error',
                code: 'card_declined',
                decline_code: 'generic_decline',
                message: 'Your card was declined.',
                charge,
              },
            }),
            requestId,
            charge,
          };
    this.#responses.set(key, stored);
    return stored;
  }

  /** Every charge made, declined ones included, in the order they were made. */
  charges(): Charge[] {
    return [...this.#responses.values()].map(({ charge }) => structuredClone(charge));
  }

  toJSON(): Record<string, StoredResponse> {
    // Object.fromEntries defines own properties, so a "__proto__" key is saved like any other.
    return Object.fromEntries(this.#responses);
  }
}
