/**
 * Operations chaos run: client processes send payments (an order, a card charge through the fake
 * provider, the payment row) through `runOperation` while faults strike - clients SIGKILLed at
 * every step boundary, clients paused (SIGSTOP) past their lease while another attempt takes the
 * payment over and then continued (SIGCONT), COMMITs cut, backends terminated, and every provider
 * fault (slow, 5xx, no answer, the answer dropped after charging) - with client retries and a
 * completer resuming abandoned operations. Then the provider's charges, the business rows, the
 * operations and every answer are checked (ops-chaos-invariants.ts).
 *
 * Usage: node test/chaos-operations/run-operations-chaos.ts [--seed N] [--operations N]
 *        [--clients N] [--faults N] [--broken no-fencing] (more in ops-chaos-options.ts).
 * Uses DATABASE_URL's server (a database of its own, dropped at the end), or an embedded one.
 * Exits 1 on any violation.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { startPaymentProvider } from '../../examples/payment-provider/server.ts';
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.ts';
import { migrate } from '../../src/index.ts';
import { Prng } from '../chaos/prng.ts';
import { within } from '../chaos/within.ts';
import { makeBrokenLibrary } from './broken-library.ts';
import { chaosPaymentOperation } from './chaos-payment.ts';
import { loadOperationsLibrary, SOURCE_DIR } from './operations-library.ts';
import { OpsFaultInjector, planOpsFaults, providerFaultPlan } from './ops-chaos-faults.ts';
import { OpsClientFleet } from './ops-chaos-fleet.ts';
import { checkOpsInvariants } from './ops-chaos-invariants.ts';
import { type OpsChaosOptions, parseOpsChaosArgs, rerunOpsCommand } from './ops-chaos-options.ts';
import type { PaymentSpec } from './ops-chaos-protocol.ts';
import { createOpsChaosSchema } from './ops-chaos-schema.ts';
import { formatOpsSummary, type OpsChaosReport } from './ops-chaos-summary.ts';
import { OpsChaosTally } from './ops-chaos-tally.ts';

const SCHEMA = 'idempotency';
/** An amount the provider always declines. */
const DECLINED_AMOUNT = 4_000_002;
const COMPLETER_INTERVAL_MS = 250;

export async function runOperationsChaos(
  options: OpsChaosOptions,
  { adminUrl, log = console.log }: { adminUrl: string; log?: (line: string) => void },
): Promise<OpsChaosReport> {
  log(`operations chaos: seed ${options.seed} (${rerunOpsCommand(options)})`);
  if (options.clients < 2) throw new Error('--clients must be 2 or more: pauses need a taker');
  const started = performance.now();
  const rng = new Prng(options.seed);
  const payments = planPayments(rng.derive(1), options.operations);
  const assignments = assign(rng.derive(2), payments, options);

  const name = `ops_chaos_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({
    connectionString: url.href,
    max: 4,
    application_name: 'ops-chaos-runner',
  });
  pool.on('error', () => undefined);
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  const provider = await startPaymentProvider({
    faultPlan: providerFaultPlan(options.seed, options.providerFaultRate),
  });
  const broken = options.broken === 'no-fencing' ? await makeBrokenLibrary() : undefined;
  let fleet: OpsClientFleet | undefined;
  let completing = false;
  try {
    await migrate({ connectionString: url.href });
    await createOpsChaosSchema(db, SCHEMA);
    const libraryDir = broken?.dir ?? SOURCE_DIR;
    const library = await loadOperationsLibrary(libraryDir);
    const operation = chaosPaymentOperation(library, provider.url, (boundary, attempt) =>
      fleet?.holdIfTakingOver(boundary, attempt),
    );

    const tally = new OpsChaosTally();
    let injector: OpsFaultInjector | undefined;
    fleet = new OpsClientFleet({
      config: {
        url: url.href,
        providerUrl: provider.url,
        libraryDir,
        seed: options.seed,
        inFlight: options.inFlight,
        leaseMs: options.leaseMs,
      },
      assignments,
      tally,
      onProgress: (answered) => injector?.onProgress(answered),
    });
    const expectedAnswers = assignments.reduce((sum, list) => sum + list.length, 0);
    injector = new OpsFaultInjector({
      plan: planOpsFaults(rng.derive(3), options.faults, expectedAnswers),
      fleet,
      admin: db,
      rng: rng.derive(4),
      tally,
    });

    // The completer, in this process, as a user would run it beside the service.
    const completeOnce = async () => {
      const result = await library.operations.resumeAbandonedOperations(db, {
        operations: [operation],
        batchSize: 10,
        leaseMs: options.leaseMs,
        onError: (error) => tally.problems.push(`completer: ${String(error)}`),
      });
      tally.completer.passes += 1;
      for (const field of ['found', 'finished', 'pending', 'skipped', 'failed'] as const) {
        tally.completer[field] += result[field];
      }
      return result;
    };
    completing = true;
    const completer = (async () => {
      while (completing) {
        await completeOnce().catch((error: unknown) => {
          tally.problems.push(`completer pass failed: ${String(error)}`);
        });
        await sleep(COMPLETER_INTERVAL_MS);
      }
    })();

    const faultsStarted = performance.now();
    fleet.start();
    injector.onProgress(0);
    await within(options.durationMs, fleet.whenAllAnswered());
    await injector.stop();
    fleet.calm();
    provider.setFaultPlan({ rules: [] });
    const faultSeconds = (performance.now() - faultsStarted) / 1000;
    await within(options.settleMs, fleet.whenAllAnswered());
    const unanswered = fleet.unanswered();
    await fleet.stop();
    completing = false;
    await completer;
    // Whatever the clients left (killed, or unanswered), leases run out and the completer drains.
    await sleep(options.leaseMs + 100);
    for (let pass = 0; pass < 50; pass++) {
      const result = await completeOnce();
      if (result.found === 0) break;
      if (result.finished === 0) await sleep(200);
    }
    if (tally.totalFaults < options.minFaults) {
      tally.problems.push(
        `only ${tally.totalFaults} faults struck, fewer than the ${options.minFaults} this run needs`,
      );
    }
    for (const kind of ['kill:', 'pause:', 'cut-commit', 'terminate']) {
      if (options.faults >= 20 && tally.faultsOf(kind) === 0) {
        tally.problems.push(`no fault of kind ${kind} struck`);
      }
    }
    const verdict = await checkOpsInvariants(db, SCHEMA, {
      payments,
      answers: tally.answers,
      charges: provider.charges(),
    });
    for (const { slot, paymentId } of unanswered) {
      tally.problems.push(`payment ${paymentId} never answered to client ${slot}`);
    }
    const report: OpsChaosReport = {
      options,
      tally,
      verdict,
      provider: provider.stats().totals,
      duplicated: expectedAnswers - payments.length,
      violations: [...tally.problems, ...verdict.violations],
      unanswered: unanswered.length,
      faultSeconds,
      seconds: (performance.now() - started) / 1000,
    };
    log(formatOpsSummary(report));
    return report;
  } finally {
    completing = false;
    await fleet?.stop();
    await db.destroy();
    await provider.close();
    await broken?.remove();
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
  }
}

/** The payments: one customer each (so the provider counts charges per payment), 5% declined. */
function planPayments(rng: Prng, count: number): PaymentSpec[] {
  return Array.from({ length: count }, (_, id) => ({
    id,
    scope: `merchant:${id % 5}:payments`,
    key: `pay-${id}`,
    request: {
      amount_cents: rng.chance(0.05) ? DECLINED_AMOUNT : rng.int(100, 99_999),
      customer: `cus_${id}`,
    },
  }));
}

/** Each payment to one client; `duplicateShare` of them to a second one too. */
function assign(rng: Prng, payments: PaymentSpec[], options: OpsChaosOptions): PaymentSpec[][] {
  const lists: PaymentSpec[][] = Array.from({ length: options.clients }, () => []);
  for (const payment of payments) {
    const first = rng.int(0, options.clients - 1);
    lists[first]?.push(payment);
    if (rng.chance(options.duplicateShare)) {
      lists[(first + rng.int(1, options.clients - 1)) % options.clients]?.push(payment);
    }
  }
  return lists;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options = parseOpsChaosArgs(process.argv.slice(2));
  const server = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
  try {
    const report = await runOperationsChaos(options, {
      adminUrl: process.env.DATABASE_URL ?? (server?.url as string),
    });
    process.exitCode = report.violations.length > 0 ? 1 : 0;
  } catch (error) {
    console.error(`operations chaos run failed (seed ${options.seed}):`, error);
    process.exitCode = 1;
  } finally {
    await server?.stop();
  }
}
