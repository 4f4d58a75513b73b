/**
 * `onConcurrent: 'optimistic'`: no claim before `fn`. `fn` runs first, and the finished entry is
 * written once, last, in the same transaction; the ledger's primary key decides between
 * duplicates that ran at the same time. The one that commits first keeps its writes; the other
 * finds the key taken, rolls back everything its `fn` wrote, and replays the winner's response.
 */
import type { Transaction } from 'kysely';
import type { CallEvent } from './call-events.ts';
import { executeAndRecord, type Recorded } from './execute-and-record.ts';
import { inFlightToken, recordOnce } from './ledger.ts';
import type { ResolvedOptions } from './options.ts';

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
  try {
    return await executeAndRecord(trx, options, fn, event, async (responseJson) => {
      const outcome = await recordOnce(trx, schema, {
        scope,
        key,
        fingerprint: options.fingerprint,
        ttlMs: options.ttlMs,
        responseJson,
        waitMs: options.waitTimeoutMs,
      });
      if (outcome === 'taken') throw new KeyTaken();
    });
  } finally {
    tokens.delete(token);
  }
}
