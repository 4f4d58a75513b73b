/**
 * How the ledger seals the response it stores, and opens it again: bound to the entry's schema,
 * scope and key, and to the fingerprint of the request it answers. The fingerprint is stored in
 * clear beside the response; binding it means that a database writer who rewrites it (to have
 * another request replay this response) makes the response fail authentication instead.
 */

import type { ResponseEncryption } from './response-encryption.ts';
import { openStoredJson, type SealBinding, sealStoredJson } from './response-encryption.ts';

/** What sealing and opening a ledger response need of a call's options. */
export interface LedgerSealContext {
  schema: string;
  scope: string;
  key: string;
  encryption?: ResponseEncryption | undefined;
}

/** The text the ledger stores for a response's JSON (`null`: none), answering `fingerprint`. */
export function sealLedgerResponse(
  json: string | null,
  fingerprint: Buffer | null,
  context: LedgerSealContext,
): string | null {
  return sealStoredJson(json, context.encryption, ledgerBinding(context, fingerprint));
}

/**
 * The response's JSON text from what the ledger stored for a request of `fingerprint`.
 *
 * @throws {ResponseDecryptionError} as `openStoredJson`.
 */
export function openLedgerResponse(
  stored: string | null,
  fingerprint: Buffer | null,
  context: LedgerSealContext,
): string | null {
  return openStoredJson(stored, context.encryption, ledgerBinding(context, fingerprint));
}

function ledgerBinding(context: LedgerSealContext, fingerprint: Buffer | null): SealBinding {
  const { schema, scope, key } = context;
  const hex = fingerprint === null ? null : fingerprint.toString('hex');
  return { kind: 'ledger_response', schema, scope, key, fingerprint: hex };
}
