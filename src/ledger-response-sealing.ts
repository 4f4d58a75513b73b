/**
 * How the ledger seals the response it stores, and opens it again: bound to the entry's schema,
 * scope and key, and to the fingerprint of the request it answers. The fingerprint is stored in
 * clear beside the response; binding it means that a database writer who rewrites it (to have
 * another request replay this response) makes the response fail authentication instead.
 */
import { ResponseDecryptionError } from './errors.ts';
import { isSealed, type SealBinding } from './internal/sealed-envelope.ts';
import type { LedgerEntry } from './ledger.ts';
import type { ResponseEncryption } from './response-encryption.ts';
import { openStoredJson, sealStoredJson, sealsNewValues } from './seal-stored-json.ts';

/** What sealing and opening a ledger response need of a call's options. */
export interface LedgerSealContext {
  schema: string;
  scope: string;
  key: string;
  encryption?: ResponseEncryption | undefined;
}

/** A ledger entry with its response in clear, and whether the ledger stores it sealed. */
export interface OpenedEntry extends LedgerEntry {
  /** The response's JSON text in clear. */
  response: string | null;
  /** Whether the ledger holds it encrypted (`plaintext: 'refuse'` refuses the others). */
  sealed: boolean;
}

/** What the ledger stores for a response's JSON (`null`: none) that answers `fingerprint`. */
export function sealLedgerResponse(
  json: string | null,
  fingerprint: Buffer | null,
  context: LedgerSealContext,
): { stored: string | null; sealed: boolean } {
  const stored = sealStoredJson(json, context.encryption, ledgerBinding(context, fingerprint));
  return { stored, sealed: sealsNewValues(context.encryption) };
}

/**
 * The entry with its response in clear. Call it once the entry's fingerprint is known to be the
 * caller's: a reused key is answered as such (422) whether or not the caller can decrypt.
 *
 * @throws {ResponseDecryptionError} as `openStoredJson`.
 */
export function openLedgerEntry(entry: LedgerEntry, context: LedgerSealContext): OpenedEntry {
  const { fingerprint, response } = entry;
  const binding = ledgerBinding(context, fingerprint);
  return {
    fingerprint,
    response: openStoredJson(response, context.encryption, binding),
    sealed: response !== null && isSealed(response, context.encryption !== undefined),
  };
}

/**
 * Refuses a response held in clear elsewhere (a `ReplayCache`) when the ledger stores it in
 * clear and the call refuses plaintext, as reading it from the ledger would.
 *
 * @throws {ResponseDecryptionError} (`plaintext_refused`).
 */
export function assertOpenable(entry: OpenedEntry, context: LedgerSealContext): void {
  if (entry.sealed || context.encryption?.plaintext !== 'refuse') return;
  const { scope, key } = context;
  throw new ResponseDecryptionError({ scope, key, reason: 'plaintext_refused' });
}

function ledgerBinding(context: LedgerSealContext, fingerprint: Buffer | null): SealBinding {
  const { schema, scope, key } = context;
  const hex = fingerprint === null ? null : fingerprint.toString('hex');
  return { kind: 'ledger_response', schema, scope, key, fingerprint: hex };
}
