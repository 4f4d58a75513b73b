import {
  CheckContext,
  type CheckOutcome,
  type ContractCheck,
  ContractViolation,
} from './check-context.ts';
import { executesConcurrentDuplicatesOnce } from './checks/executes-concurrent-duplicates-once.ts';
import { executesOnceAcrossCrash } from './checks/executes-once-across-crash.ts';
import { keepsKeysOutOfErrors } from './checks/keeps-keys-out-of-errors.ts';
import { refusesKeyReuse } from './checks/refuses-key-reuse.ts';
import { refusesMissingKey } from './checks/refuses-missing-key.ts';
import { refusesRepeatedKeyHeader } from './checks/refuses-repeated-key-header.ts';
import { replaysResponse } from './checks/replays-response.ts';
import { ContractClient } from './contract-client.ts';
import {
  type IdempotencyContractOptions,
  type ResolvedContractOptions,
  resolveContractOptions,
} from './contract-options.ts';
import type { ContractCheckResult, ContractReport } from './contract-report.ts';

/**
 * The checks in the order they run: the crash check restarts the server, so it comes after the
 * others; the key-echo check reads the error responses all the others received, so it is last.
 */
const CHECKS: readonly ContractCheck[] = [
  refusesMissingKey,
  refusesRepeatedKeyHeader,
  replaysResponse,
  refusesKeyReuse,
  executesConcurrentDuplicatesOnce,
  executesOnceAcrossCrash,
  keepsKeysOutOfErrors,
];

/**
 * Checks that an HTTP endpoint keeps the idempotency contract (the IETF Idempotency-Key draft, as
 * Stripe implements it): a missing or repeated key is a 400 problem; a retry gets the first
 * response byte for byte, marked as a replay; a key reused with another body is a 422 problem;
 * concurrent duplicates execute once; error responses never echo the key. With `countEffects`,
 * "once" is counted in your data, not inferred from responses; with `crash`, the kit kills your
 * server mid-request and requires every key to have executed exactly once after the restart.
 *
 * Every request uses a fresh random key, so the kit can run against a live API repeatedly; it
 * does create real effects there: seven, plus about `2 × concurrency` with `crash`. No test
 * framework is needed: it returns a report, and never throws for a broken contract.
 *
 * @throws {InvalidIdempotencyOptionsError} when the options are invalid; nothing was sent.
 *
 * @example
 * ```ts
 * import { checkIdempotencyContract, formatContractReport } from 'idempotency-ledger/conformance';
 *
 * const report = await checkIdempotencyContract({
 *   baseUrl: 'http://127.0.0.1:3000',
 *   path: '/payments',
 *   headers: { 'merchant-id': 'conformance' },
 *   body: (n) => ({ amount_cents: 100 + n, currency: 'EUR' }),
 *   countEffects: async (key) => countPaymentsWithKey(key),
 * });
 * if (!report.passed) throw new Error(formatContractReport(report));
 * ```
 */
export async function checkIdempotencyContract(
  options: IdempotencyContractOptions,
): Promise<ContractReport> {
  const resolved = resolveContractOptions(options);
  const client = new ContractClient(resolved);
  let bodies = 0;
  const nextBody = () => {
    // Steps of 2: the key-reuse check sends body(n + 1) as "another body", used by nobody else.
    bodies += 2;
    return bodies;
  };
  const checks: ContractCheckResult[] = [];
  try {
    for (const check of CHECKS) {
      const result = await runCheck(check, resolved, client, nextBody);
      checks.push(result);
      resolved.onCheck(result);
    }
  } finally {
    client.close();
  }
  return { passed: checks.every((check) => check.status !== 'failed'), checks };
}

async function runCheck(
  check: ContractCheck,
  options: ResolvedContractOptions,
  client: ContractClient,
  nextBody: () => number,
): Promise<ContractCheckResult> {
  const started = performance.now();
  const controller = new AbortController();
  const context = new CheckContext(options, client, controller.signal, nextBody);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new CheckTimeout(`timed out after ${options.checkTimeoutMs} ms while ${context.step}`),
      );
    }, options.checkTimeoutMs);
  });
  let outcome: CheckOutcome | { status: 'failed'; detail: string };
  try {
    // The race, not only the signal, bounds the check: a user callback (countEffects, restart)
    // cannot be aborted.
    outcome = await Promise.race([check.run(context), timedOut]);
  } catch (error) {
    outcome = { status: 'failed', detail: failureDetail(error, context) };
  } finally {
    clearTimeout(timer);
    // Ends whatever the check left running: requests in flight, retry loops, pauses.
    controller.abort();
  }
  return {
    id: check.id,
    name: check.name,
    ...outcome,
    durationMs: Math.round(performance.now() - started),
  };
}

class CheckTimeout extends Error {}

/** A finding speaks for itself; anything else (a network error, a callback's) says when it hit. */
function failureDetail(error: unknown, context: CheckContext): string {
  if (error instanceof ContractViolation || error instanceof CheckTimeout) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  return `${message} (while ${context.step})`;
}
