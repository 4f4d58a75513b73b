import type { Tally } from './client.ts';
import type { StormPlan } from './storm.ts';
import type { Verification } from './verify.ts';

export interface Report {
  where: string;
  plan: StormPlan;
  tally: Tally;
  verification: Verification;
  serverKills: number;
  transactionsCutOff: number;
  backendsTerminated: number;
  serverCrashed: boolean;
  errorMapping: string[];
  serverLog: string[];
  seconds: number;
}

const count = new Intl.NumberFormat('en-US');

/** Prints the summary; returns whether every check passed. */
export function printSummary(report: Report): boolean {
  const { plan, tally, verification: v } = report;
  const lines = ['idempotency-ledger demo: retry storm against a create-payment service'];
  const row = (label: string, value: number | string, note = '') => {
    const shown = typeof value === 'number' ? count.format(value) : value;
    lines.push(`  ${label.padEnd(20)}${shown.padStart(7)}${note ? `   (${note})` : ''}`);
  };
  const mark = (ok: boolean) => (ok ? '✓' : '✗');

  const keys = plan.merchants * plan.keysPerMerchant;
  const bodies = [...tally.received.values()].reduce((sum, list) => sum + list.length, 0);
  const lost = v.distinctPairs - tally.executed;
  const failures = [
    ...(v.paymentsWritten === v.pairsWith201 && v.pairsWith201 === keys
      ? []
      : [`${v.paymentsWritten} payments, ${v.pairsWith201} keys answered 201, ${keys} keys sent`]),
    ...(tally.gaveUp > 0 ? [`${tally.gaveUp} logical requests gave up`] : []),
    ...tally.unexpected,
    ...v.bodyMismatches,
    ...v.ledgerMismatches,
    ...report.errorMapping,
    ...(report.serverCrashed ? ['the payment service died without being killed'] : []),
  ];

  row(
    'requests sent',
    tally.sent,
    `${count.format(plan.requests)} logical, ${count.format(tally.abortedByClient)} aborted by their clients`,
  );
  row(
    'server killed',
    `${report.serverKills}x`,
    `${report.transactionsCutOff} transactions in flight; backends terminated ${report.backendsTerminated}x`,
  );
  row(
    'executions',
    tally.executed,
    lost > 0 ? `+${lost} committed, answer lost to an abort or crash` : 'fn ran and committed',
  );
  row('replays', tally.replayed);
  row('conflicts (409)', tally.conflicts);
  row(
    'retried errors',
    tally.networkErrors + tally.serverErrors,
    `${count.format(tally.networkErrors)} network, ${count.format(tally.serverErrors)} server 5xx`,
  );
  row(
    'distinct keys',
    v.pairsWith201,
    `${plan.keysPerMerchant} keys x ${plan.merchants} merchants`,
  );
  row('payments written', v.paymentsWritten);
  lines.push(
    `  ${'duplicates'.padEnd(20)}${String(v.duplicates).padStart(7)}   ${mark(v.duplicates === 0)}`,
  );
  row(
    '201 bodies = stored',
    mark(v.bodyMismatches.length === 0),
    `${count.format(bodies)} checked; ledger ${v.ledgerMismatches.length === 0 ? 'agrees' : 'disagrees'}`,
  );
  row('400 / 422 mapping', mark(report.errorMapping.length === 0));
  lines.push(`  finished in ${report.seconds.toFixed(1)} s on ${report.where}`);

  const passed = failures.length === 0 && v.duplicates === 0;
  if (!passed) {
    lines.push(
      `  ✗ ${failures.length} check(s) failed:`,
      ...failures.slice(0, 5).map((f) => `    ${f}`),
    );
    // On a clean run these are only the expected echoes of the terminated backends.
    if (report.serverLog.length > 0) {
      lines.push('  server log:', ...report.serverLog.map((line) => `    ${line}`));
    }
  }
  console.log(lines.join('\n'));
  return passed;
}
