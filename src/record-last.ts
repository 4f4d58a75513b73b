/**
 * `onConcurrent: 'optimistic'`: no claim before `fn`. `fn` runs first, and the finished entry is
 * written once, last, in the same transaction; the ledger's primary key decides between
 * duplicates that ran at the same time. The one that commits first keeps its writes; the other
 * finds the key taken, rolls back everything its `fn` wrote, and replays the winner's response.
 */
import type { Transaction } from 'kysely';
import { type CallEvent, timed } from './call-events.ts';
import { inFlightToken, recordOnce } from './ledger.ts';
import type { ResolvedOptions } from './options.ts';
import { encodeResponse } from './response-codec.ts';

/** What a transaction that ran `fn` and recorded its response stored. */
export interface Recorded {
  response: unknown;
  json: string | null;
  /** `performance.now()` before the record statement: the entry expires no earlier than ttl after. */
  recordedAtMs: number;
}

/**
 * Thrown inside the transaction when a live entry already holds the key, so that the transaction
 * rolls back. Never leaves withIdempotency.
 */
export class KeyTaken extends Error {
  constructor() {
    super('another call recorded this key first');
    this.name = 'KeyTaken';
  }
}

// The keys each transaction runs an optimistic fn for, so that a nested call for the same key on
// that transaction is refused at once: it would record into the outer call's transaction, and the
// outer record would then find the key taken by its own transaction.
const runningIn = new WeakMap<object, Set<string>>();

/** True when an optimistic call for (schema, scope, key) is running its `fn` in `trx`. */
export function runsOptimisticFn(trx: object, token: string): boolean {
  return runningIn.get(trx)?.has(token) ?? false;
}

/**
 * Runs `fn` in `trx`, then writes the finished entry in one INSERT.
 *
 * @throws {KeyTaken} when another call recorded the key first; roll back and replay it.
 */
export async function executeThenRecord(
  trx: Transaction<unknown>,
  options: ResolvedOptions,
  fn: (trx: Transaction<unknown>) => Promise<unknown>,
  event?: CallEvent,
): Promise<Recorded> {
  const { schema, scope, key } = options;
  const token = inFlightToken(schema, scope, key);
  const tokens = runningIn.get(trx) ?? new Set<string>();
  runningIn.set(trx, tokens.add(token));
  let value: unknown;
  try {
    value = await timed(event, 'fnMs', () => fn(trx));
  } finally {
    tokens.delete(token);
  }
  const encoded = encodeResponse(value, options);
  const recordedAtMs = performance.now();
  const outcome = await timed(event, 'recordMs', () =>
    recordOnce(trx, schema, {
      scope,
      key,
      fingerprint: options.fingerprint,
      ttlMs: options.ttlMs,
      responseJson: encoded.json,
      waitMs: options.waitTimeoutMs,
    }),
  );
  if (outcome === 'taken') throw new KeyTaken();
  return { response: encoded.response, json: encoded.json, recordedAtMs };
}
