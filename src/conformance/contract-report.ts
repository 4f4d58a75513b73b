/** The stable identifiers of the kit's checks, in the order they run. */
export type ContractCheckId =
  | 'missing-key'
  | 'repeated-key-header'
  | 'replay'
  | 'key-reuse'
  | 'concurrent-duplicates'
  | 'crash'
  | 'keys-in-errors';

/** One check's outcome. */
export interface ContractCheckResult {
  /** Stable identifier, to match on in code. */
  id: ContractCheckId;
  /** The behaviour checked, as a sentence. */
  name: string;
  /**
   * `skipped` when the check could not run: the crash check without a `crash` option, or the
   * key-echo check when no error response came back to examine.
   */
  status: 'passed' | 'failed' | 'skipped';
  /** What was seen; on failure, what was expected and what came back (status and body start). */
  detail: string;
  durationMs: number;
}

/** What {@link checkIdempotencyContract} found. */
export interface ContractReport {
  /** True when no check failed. */
  passed: boolean;
  checks: ContractCheckResult[];
}

const MARKS = { passed: 'PASS', failed: 'FAIL', skipped: 'SKIP' } as const;

/**
 * The report as text, one line per check: for a test's failure message or a CI log.
 *
 * @example
 * ```ts
 * const report = await checkIdempotencyContract(options);
 * console.log(formatContractReport(report));
 * // PASS replays the first response byte for byte (412 ms): 201 replayed with Idempotent-Replayed: true...
 * ```
 */
export function formatContractReport(report: ContractReport): string {
  return report.checks
    .map(
      (check) => `${MARKS[check.status]} ${check.name} (${check.durationMs} ms): ${check.detail}`,
    )
    .join('\n');
}
