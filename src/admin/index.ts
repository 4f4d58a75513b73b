/**
 * `idempotency-ledger/admin`: operators' tools over the ledger and its operations: look one key
 * up ({@link inspectKey}), release it ({@link releaseKey}), measure the ledger
 * ({@link ledgerStats}) and list entries or stuck operations ({@link listEntries},
 * {@link listStuckOperations}). The command line's `inspect`, `release`, `stats` and `list` run
 * them. Results hold keys, which an operator asked for; errors never do.
 *
 * @module
 */
export {
  type EntryInspection,
  type InspectKeyOptions,
  inspectKey,
  type KeyInspection,
  type OperationInspection,
  type StepInspection,
} from './inspect-key.ts';
export {
  type LedgerStats,
  type LedgerStatsOptions,
  ledgerStats,
  type ScopeStats,
  type StatsStage,
} from './ledger-stats.ts';
export { type EntrySummary, type ListEntriesOptions, listEntries } from './list-entries.ts';
export {
  type ListStuckOptions,
  listStuckOperations,
  type StuckOperation,
} from './list-stuck-operations.ts';
export { type ReleaseKeyOptions, type ReleaseResult, releaseKey } from './release-key.ts';
