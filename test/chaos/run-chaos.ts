/**
 * Chaos run: many client processes retry operations through withIdempotency while faults strike
 * (client processes SIGKILLed mid-execution, connections cut while COMMIT is in flight, backends
 * terminated, statements timed out, the server restarted and crash-recovered), then the database
 * and every answer the clients got are checked: no key executed twice, no answer differs from the
 * stored response, no key is stuck.
 *
 * Usage: node test/chaos/run-chaos.ts [--seed N] [--operations N] [--clients N] [--keys N]
 *        [--duration-ms N] (more knobs in chaos-options.ts). Exits 1 on any violation.
 *
 * It starts its own embedded Postgres, never DATABASE_URL's server: it restarts it. The seed fixes
 * the plan (keys, the order operations arrive in and which client sends each, which fault strikes
 * after how many answers, which client gets it); how the processes interleave is up to the machine,
 * so a rerun with the same seed repeats the plan, not every timing.
 */
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.ts';
import { migrate } from '../../src/index.ts';
import { type ChaosOptions, parseChaosArgs, rerunCommand } from './chaos-options.ts';
import { type ChaosDb, createChaosSchema } from './chaos-schema.ts';
import { ClientFleet } from './client-fleet.ts';
import { FaultInjector } from './fault-injector.ts';
import { checkInvariants } from './invariants.ts';
import { planFaults, planOperations } from './plan.ts';
import { Prng } from './prng.ts';
import { RunTally } from './run-tally.ts';
import { type ChaosReport, formatSummary } from './summary.ts';
import { within } from './within.ts';

/**
 * Runs one chaos run with `options` and returns its report; `report.violations` is empty when
 * every invariant held. Prints the seed first, and the summary last, through `log`.
 */
export async function runChaos(
  options: ChaosOptions,
  log: (line: string) => void = console.log,
): Promise<ChaosReport> {
  log(`chaos: seed ${options.seed} (${rerunCommand(options)})`);
  const started = performance.now();
  const rng = new Prng(options.seed);
  const { perClient } = planOperations(
    rng.derive(1),
    options.operations,
    options.keys,
    options.clients,
  );
  const plan = planFaults(rng.derive(2), options.operations, options.faults, options.restarts);

  const server = await startEmbeddedPostgres();
  const pool = new pg.Pool({
    connectionString: server.url,
    max: 8,
    application_name: 'chaos-runner',
  });
  // The runner's connections die with every restart: the next query opens a new one.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const admin: ChaosDb = new Kysely({ dialect: new PostgresDialect({ pool }) });
  let fleet: ClientFleet | undefined;
  try {
    await migrate({ connectionString: server.url });
    await createChaosSchema(admin);

    const tally = new RunTally();
    let injector: FaultInjector | undefined;
    fleet = new ClientFleet({
      url: server.url,
      seed: options.seed,
      scopes: options.scopes,
      inFlight: options.inFlight,
      tightShare: options.tightShare,
      waitTimeoutMs: options.waitTimeoutMs,
      perClient,
      tally,
      onProgress: (answered) => injector?.onProgress(answered),
    });
    injector = new FaultInjector({ plan, fleet, server, admin, rng: rng.derive(3), tally });

    const faultsStarted = performance.now();
    fleet.start();
    injector.onProgress(0);
    await within(options.durationMs, fleet.whenAllAnswered());
    await injector.stop().catch((error: unknown) => {
      tally.problems.push(`a fault could not be carried out: ${String(error)}`);
    });
    fleet.calm();
    const faultSeconds = (performance.now() - faultsStarted) / 1000;
    // With the faults off, every operation must get its answer: nothing may stay blocked.
    await within(options.settleMs, fleet.whenAllAnswered());
    const unanswered = fleet.unanswered();
    await fleet.stop();
    if (tally.totalFaults < options.minFaults) {
      tally.problems.push(
        `only ${tally.totalFaults} faults were injected, fewer than the ${options.minFaults} this run needs`,
      );
    }

    const verdict = await checkInvariants(admin, {
      keys: options.keys,
      scopes: options.scopes,
      answers: tally.answers,
      commitFaults: tally.commitFaults,
      unanswered,
    });
    const report: ChaosReport = {
      options,
      tally,
      verdict,
      violations: [...tally.problems, ...verdict.violations],
      unanswered: unanswered.length,
      faultSeconds,
      seconds: (performance.now() - started) / 1000,
    };
    log(formatSummary(report));
    return report;
  } finally {
    // On an error halfway, too: no client process may outlive the run.
    await fleet?.stop();
    await admin.destroy();
    await server.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options = parseChaosArgs(process.argv.slice(2));
  try {
    const report = await runChaos(options);
    process.exitCode = report.violations.length > 0 ? 1 : 0;
  } catch (error) {
    console.error(`chaos run failed (seed ${options.seed}):`, error);
    process.exitCode = 1;
  }
}
