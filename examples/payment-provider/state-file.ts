/**
 * The provider's state on disk, so that a provider killed (SIGKILL) and started again on the same
 * file still knows every charge and every counter.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { StoredResponse } from './charge-store.ts';
import type { ProviderStats } from './stats.ts';

/** What the state file holds. */
export interface ProviderState {
  version: 1;
  /** The stored responses, by idempotency key. */
  responses: Record<string, StoredResponse>;
  stats: ProviderStats;
}

/**
 * Reads the state file, or `undefined` when there is none yet. A file that cannot be read as
 * state stops the provider from starting: forgetting charges silently would let a test pass
 * that should not.
 *
 * @example
 * ```ts
 * const state = loadState('/tmp/provider.json'); // undefined on the first start
 * ```
 */
export function loadState(path: string): ProviderState | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let state: ProviderState;
  try {
    state = JSON.parse(text) as ProviderState;
  } catch (error) {
    throw new Error(`${path} is not JSON`, { cause: error });
  }
  if (
    state?.version !== 1 ||
    typeof state.responses !== 'object' ||
    typeof state.stats !== 'object'
  ) {
    throw new Error(`${path} is not a payment provider state file (version 1)`);
  }
  return state;
}

/**
 * Replaces the state file, synchronously and atomically: the new state goes to a temporary file
 * that is then renamed over the old one, so a process killed at any instant leaves either the
 * old state or the new one, never half of one. Synchronous, so that it is on disk before the
 * response that reports it is sent. Not fsynced: it survives the process, not the machine.
 *
 * @example
 * ```ts
 * saveState('/tmp/provider.json', { version: 1, responses: {}, stats });
 * ```
 */
export function saveState(path: string, state: ProviderState): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(state));
  renameSync(temporary, path);
}
