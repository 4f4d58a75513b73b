/** The summary a person reads at a glance after a chaos run. */
import { type ChaosOptions, rerunCommand } from './chaos-options.ts';
import type { Verdict } from './invariants.ts';
import type { FaultKind, RunTally } from './run-tally.ts';
import { count, mark, summaryWriter } from './summary-writer.ts';

export interface ChaosReport {
  options: ChaosOptions;
  tally: RunTally;
  verdict: Verdict;
  /** Everything that went wrong: the verdict's violations and the run's own problems. */
  violations: string[];
  /** Operations that never got an answer. */
  unanswered: number;
  /** Seconds until the faults stopped, and in all. */
  faultSeconds: number;
  seconds: number;
}

export function formatSummary(report: ChaosReport): string {
  const { options, tally, verdict } = report;
  const faults = (kind: FaultKind) => tally.faults.get(kind) ?? 0;
  const summary = summaryWriter(`idempotency-ledger chaos run, seed ${options.seed}`, 24);
  const { row } = summary;
  const outcome = (label: string) => {
    const seen = verdict.commitOutcomes.get(label);
    return seen ? `; ${seen.committed} had committed, ${seen.rolledBack} had not` : '';
  };

  const executed = tally.answers.filter((answer) => !answer.replayed).length;
  const answered = options.operations - report.unanswered;
  row(
    'operations',
    options.operations,
    `(${options.keys} keys in ${options.scopes} scopes; ${options.clients} client processes x ${options.inFlight} in flight)`,
  );
  row(
    'attempts',
    tally.attempts,
    `(${count.format(Math.max(0, tally.attempts - answered))} retries; ${count.format(tally.callerTransactionAttempts)} inside the client's own transaction; ${count.format(tally.optimisticAttempts)} optimistic)`,
  );
  row(
    'answers',
    tally.answers.length,
    `(${count.format(executed)} executed, ${count.format(tally.answers.length - executed)} replayed)`,
  );
  const failures = [...tally.failures].sort((a, b) => b[1] - a[1]);
  row(
    'failed attempts',
    failures.reduce((sum, [, n]) => sum + n, 0),
    `(${failures.map(([kind, n]) => `${count.format(n)} ${kind}`).join(', ') || 'none'})`,
  );
  row('faults injected', tally.totalFaults, `(${report.faultSeconds.toFixed(1)} s of faults)`);
  const kill = (point: string) => faults(`kill:${point}` as FaultKind);
  row(
    '  client SIGKILLed',
    kill('before-claim') + kill('in-fn') + kill('before-commit') + kill('during-commit'),
    `(before claim ${kill('before-claim')}, inside fn ${kill('in-fn')}, before commit ${kill('before-commit')}, during commit ${kill('during-commit')}${outcome('kill:during-commit')})`,
  );
  row(
    '  commit cut (ambiguous)',
    faults('cut:before-send') + faults('cut:after-send'),
    `(before send ${faults('cut:before-send')}${outcome('cut:before-send')}; after send ${faults('cut:after-send')}${outcome('cut:after-send')})`,
  );
  row('  backends terminated', faults('terminate'));
  row('  statement timeouts', faults('statement-timeout'), '(57014)');
  row('  lock timeouts', faults('lock-timeout'), '(55P03)');
  row(
    '  server restarts',
    faults('restart:fast') + faults('restart:immediate'),
    `(${faults('restart:fast')} fast, ${faults('restart:immediate')} immediate with crash recovery)`,
  );
  row(
    '  planned, never struck',
    tally.armed - tally.clientFaultsFired + tally.neverArmed,
    `(client faults that met no execution to strike: ${tally.armed - tally.clientFaultsFired} armed, ${tally.neverArmed} still waiting for a client)`,
  );
  row('duplicates', verdict.duplicates, mark(verdict.duplicates === 0));
  row(
    'lost responses',
    verdict.lostResponses,
    `${mark(verdict.lostResponses === 0)}   (${count.format(verdict.answersCompared)} answers compared with the ledger, byte for byte)`,
  );
  row(
    'stuck keys',
    verdict.stuckKeys,
    `${mark(verdict.stuckKeys === 0)}   (${count.format(verdict.keysChecked)} keys checked; each replayed in a final pass)`,
  );
  row(
    'ledger = business rows',
    mark(!report.violations.some((violation) => violation.startsWith('mismatch'))),
    `(${count.format(verdict.ledgerRows)} ledger entries, ${count.format(verdict.businessRows)} business rows, tallies)`,
  );
  row('duration', `${report.seconds.toFixed(1)} s`);

  return summary.end(report.violations, options.seed, rerunCommand(options));
}
