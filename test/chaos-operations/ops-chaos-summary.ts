/** The summary a person reads at a glance after an operations chaos run. */
import type { ProviderStats } from '../../examples/payment-provider/stats.ts';
import { count, mark, summaryWriter } from '../chaos/summary-writer.ts';
import type { OpsVerdict } from './ops-chaos-invariants.ts';
import { type OpsChaosOptions, rerunOpsCommand } from './ops-chaos-options.ts';
import { BOUNDARIES, PAUSE_POINTS } from './ops-chaos-protocol.ts';
import type { OpsChaosTally } from './ops-chaos-tally.ts';

export interface OpsChaosReport {
  options: OpsChaosOptions;
  tally: OpsChaosTally;
  verdict: OpsVerdict;
  provider: ProviderStats['totals'];
  /** Payments sent by two clients. */
  duplicated: number;
  violations: string[];
  unanswered: number;
  faultSeconds: number;
  seconds: number;
}

export function formatOpsSummary(report: OpsChaosReport): string {
  const { options, tally, verdict, provider } = report;
  const broken = options.broken === 'none' ? '' : ` (library copy: ${options.broken})`;
  const summary = summaryWriter(
    `idempotency-ledger operations chaos run, seed ${options.seed}${broken}`,
    26,
  );
  const { row } = summary;
  const list = (entries: Iterable<[string, number]>) =>
    [...entries].map(([kind, n]) => `${kind} ${count.format(n)}`).join(', ') || 'none';
  const faults = (kind: string) => tally.faults.get(kind) ?? 0;

  const replayed = tally.answers.filter((answer) => answer.replayed).length;
  const resumed = tally.answers.filter((answer) => answer.resumed).length;
  row(
    'payments',
    options.operations,
    `(${options.clients} client processes x ${options.inFlight} in flight; ${count.format(report.duplicated)} sent by two clients; lease ${options.leaseMs} ms)`,
  );
  row('attempts', tally.attempts, `(${count.format(tally.restarts)} client processes restarted)`);
  row(
    'answers',
    tally.answers.length,
    `(${count.format(replayed)} replayed, ${count.format(resumed)} resumed)`,
  );
  row(
    'failed attempts',
    [...tally.failures.values()].reduce((a, b) => a + b, 0),
    `(${list(tally.failures)})`,
  );
  row(
    'faults injected',
    tally.totalFaults,
    `(${report.faultSeconds.toFixed(1)} s of faults; provider faults below)`,
  );
  row(
    '  client SIGKILLed',
    tally.faultsOf('kill:'),
    `(${BOUNDARIES.map((point) => `${point} ${faults(`kill:${point}`)}`).join(', ')})`,
  );
  row(
    '  paused past the lease',
    tally.faultsOf('pause:'),
    `(${PAUSE_POINTS.map((point) => `${point} ${faults(`pause:${point}`)}`).join(', ')}; once continued: ${list(tally.pausedEndings)})`,
  );
  row('  commit cut (ambiguous)', faults('cut-commit'));
  row('  backends terminated', faults('terminate'));
  row(
    '  planned, never struck',
    tally.neverStruck,
    tally.pausesWithoutTakeover ? `(${tally.pausesWithoutTakeover} pauses saw no takeover)` : '',
  );
  const providerFaults = Object.values(provider.faults).reduce((a, b) => a + (b ?? 0), 0);
  row(
    'provider faults',
    providerFaults,
    `(${list(Object.entries(provider.faults) as [string, number][])})`,
  );
  row(
    'provider requests',
    provider.requests,
    `(${count.format(provider.charges)} charges: ${count.format(provider.succeeded)} succeeded, ${count.format(provider.declined)} declined; ${count.format(provider.replays)} replays, ${count.format(provider.inProgress)} 409 in progress)`,
  );
  const { completer } = tally;
  row(
    'completer',
    completer.finished,
    `finished (${count.format(completer.passes)} passes found ${count.format(completer.found)}: ${count.format(completer.pending)} pending again, ${count.format(completer.skipped)} taken by others, ${count.format(completer.failed)} failed)`,
  );
  const charged = !report.violations.some((v) => /charged/.test(v));
  row(
    'charged at most once',
    mark(charged),
    `(per payment, by the provider's count; exactly once for each finished)`,
  );
  row(
    'finished',
    verdict.finished.created + verdict.finished.declined,
    `(${count.format(verdict.finished.created)} paid, ${count.format(verdict.finished.declined)} declined; ${count.format(verdict.businessRows.orders)} orders, ${count.format(verdict.businessRows.payments)} payment rows)`,
  );
  row('left in progress', verdict.inProgress, mark(verdict.inProgress === 0));
  row(
    'answers = stored response',
    mark(!report.violations.some((v) => / got /.test(v))),
    `(${count.format(verdict.answersCompared)} answers compared byte for byte)`,
  );
  row(
    'fenced-off writes committed',
    verdict.fencedWritesCommitted,
    mark(verdict.fencedWritesCommitted === 0),
  );
  row('unanswered', report.unanswered, mark(report.unanswered === 0));
  row('duration', `${report.seconds.toFixed(1)} s`);
  return summary.end(report.violations, options.seed, rerunOpsCommand(options));
}
