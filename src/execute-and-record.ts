/**
 * The part of an attempt both ways of recording share: run `fn`, encode what it returned, and
 * store it, timing both into the call's event. How it is stored is the caller's: an UPDATE of the
 * row the claim inserted, or the one INSERT of `onConcurrent: 'optimistic'`.
 */
import type { Transaction } from 'kysely';
import { type CallEvent, timed } from './call-events.ts';
import { sealLedgerResponse } from './ledger-response-sealing.ts';
import type { ResolvedOptions } from './options.ts';
import { encodeResponse } from './response-codec.ts';

/** What a transaction that ran `fn` and recorded its response stored. */
export interface Recorded {
  response: unknown;
  /** The response's JSON text, in clear. */
  json: string | null;
  /** Whether it was stored encrypted. */
  sealed: boolean;
  /** `performance.now()` before the record statement: the entry expires no earlier than ttl after. */
  recordedAtMs: number;
}

/**
 * Runs `fn` in `trx`, then stores its encoded response with `record`: sealed when the call has
 * `encryption`. What it returns stays the plaintext (the response, and the JSON the replay cache
 * remembers).
 */
export async function executeAndRecord(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event: CallEvent | undefined,
  record: (storedJson: string | null) => Promise<void>,
): Promise<Recorded> {
  const value = await timed(event, 'fnMs', () => fn(trx));
  const encoded = encodeResponse(value, options);
  const recordedAtMs = performance.now();
  const { stored, sealed } = sealLedgerResponse(encoded.json, options.fingerprint, options);
  await timed(event, 'recordMs', () => record(stored));
  return { response: encoded.response, json: encoded.json, sealed, recordedAtMs };
}
