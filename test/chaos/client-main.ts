/**
 * A chaos client process, started by the runner (client-fleet.ts) with `fork()`; its settings
 * are the first argument, as JSON. It runs the operations the runner sends it, a few at a time,
 * each until it gets an answer: withIdempotency with the operation's key, fn inserting one
 * business row and returning something unique to that execution. Every failure is retried with
 * the same key and request, as a real client would. It reports each attempt, failure and answer,
 * and carries out the faults the runner arms it with.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Transaction } from 'kysely';
import { IdempotencyConflictError, IdempotencyError, withIdempotency } from '../../src/index.ts';
import { type AttemptState, ClientFaults } from './client-faults.ts';
import { type ClientDatabases, createClientDatabases } from './client-wire.ts';
import { type KeySpec, keySpec } from './plan.ts';
import { Prng } from './prng.ts';
import type {
  ClientConfig,
  ClientMessage,
  FailureClass,
  Operation,
  RunnerMessage,
} from './protocol.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as ClientConfig;
const label = `client-${config.slot}.${config.incarnation}`;
const rng = new Prng(config.seed);
const report = (message: ClientMessage) => {
  if (process.connected) process.send?.(message);
};
const faults = new ClientFaults(report);
const databases = createClientDatabases(
  config.url,
  `chaos-client-${config.slot}`,
  config.inFlight,
  rng,
  faults,
);
/** Share of attempts that call withIdempotency inside a transaction of the client's own. */
const CALLER_TRANSACTION_SHARE = 0.2;
/** Once the runner calls the faults off, no more tight timeouts either. */
let calm = false;

process.on('message', (message: RunnerMessage) => {
  if (message.type === 'work') void runAll(message.operations);
  if (message.type === 'arm' && !calm) faults.armed = message.fault;
  if (message.type === 'calm') {
    calm = true;
    faults.armed = undefined;
  }
  if (message.type === 'exit') void exit();
});
// The runner is gone: nobody is left to report to.
process.on('disconnect', () => process.exit(0));

async function runAll(operations: Operation[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let op = operations[next++]; op; op = operations[next++]) await runOperation(op);
  };
  await Promise.all(Array.from({ length: config.inFlight }, worker));
  report({ type: 'idle' });
}

async function runOperation(op: Operation): Promise<void> {
  const spec = keySpec(op.keyIndex, config.scopes);
  for (let attempt = 1; ; attempt++) {
    const inCallerTransaction = rng.chance(CALLER_TRANSACTION_SHARE);
    const options = inCallerTransaction
      ? baseOptions(spec)
      : { ...ownTransactionOptions(spec), ...isolationOption() };
    const optimistic = options.onConcurrent === 'optimistic';
    report({ type: 'attempt', op: op.id, inCallerTransaction, optimistic });
    const state: AttemptState = { keyIndex: op.keyIndex, token: undefined };
    const db = !calm && rng.chance(config.tightShare) ? databases.tight : databases.steady;
    const fn = (trx: Transaction<unknown>) => execute(trx, spec, state);
    try {
      const { response, replayed } = await faults.attempts.run(state, () =>
        inCallerTransaction
          ? // The caller's own transaction: the library claims inside it, and COMMIT is ours.
            transactionBuilder(db).execute((trx) => withIdempotency(trx, options, fn))
          : withIdempotency(db, options, fn),
      );
      report({
        type: 'answered',
        op: op.id,
        keyIndex: op.keyIndex,
        replayed,
        response: JSON.stringify(response),
      });
      return;
    } catch (error) {
      const failure = classify(error);
      report({ type: 'failed', op: op.id, failure, message: describe(error) });
      // A 409 asks to retry after retryAfterMs (1 s); retrying sooner only adds load, and keeps
      // the run short.
      const retryAfter = error instanceof IdempotencyConflictError ? 100 : 0;
      await sleep(Math.max(retryAfter, backoffMs(attempt)));
    }
  }
}

/** Varies what the library is asked to do, so faults meet each of its paths. */
function baseOptions(spec: KeySpec) {
  return {
    scope: spec.scope,
    key: spec.key,
    request: spec.request,
    waitTimeoutMs: config.waitTimeoutMs,
    onConcurrent: rng.chance(0.2) ? ('reject' as const) : ('wait' as const),
  };
}

/** In the library's own transaction, 'optimistic' too: no claim before fn, the entry last. */
function ownTransactionOptions(spec: KeySpec) {
  const options = baseOptions(spec);
  return rng.chance(0.3) ? { ...options, onConcurrent: 'optimistic' as const } : options;
}

/** Mostly read committed; sometimes an isolation level at which claims fail with 40001. */
function isolationOption(): { isolationLevel?: 'repeatable read' | 'serializable' } {
  const roll = rng.next();
  if (roll < 0.15) return { isolationLevel: 'repeatable read' };
  if (roll > 0.85) return { isolationLevel: 'serializable' };
  return {};
}

function transactionBuilder(db: ClientDatabases['steady']) {
  const { isolationLevel } = isolationOption();
  return isolationLevel ? db.transaction().setIsolationLevel(isolationLevel) : db.transaction();
}

/** fn: one business row, one tally bump, and a response no other execution can produce. */
async function execute(trx: Transaction<unknown>, spec: KeySpec, state: AttemptState) {
  const token = randomUUID();
  state.token = token;
  const { rows } = await sql<{ id: string }>`
    insert into effects (scope, key, token, client, payload)
    values (${spec.scope}, ${spec.key}, ${token}, ${label}, ${JSON.stringify(spec.request)}::jsonb)
    returning id::text as id`.execute(trx);
  faults.insideFn(state);
  await sql`update tallies set executions = executions + 1 where bucket = ${spec.bucket}`.execute(
    trx,
  );
  // Business work takes a moment, holding the tally row: duplicates wait on the claim meanwhile,
  // other executions in the bucket on the row, and the tight timeouts get something to cut.
  await sql`select pg_sleep(${rng.int(0, 8) / 1000})`.execute(trx);
  return { effectId: rows[0]?.id, token, client: label, amountCents: spec.request.amountCents };
}

function classify(error: unknown): FailureClass {
  if (error instanceof IdempotencyConflictError) {
    return error.reason === 'in_flight' ? 'conflict' : 'wait-timeout';
  }
  // Any other library error (a 422 for our unchanging request, say) is a bug.
  if (error instanceof IdempotencyError) return 'unexpected';
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '57014') return 'statement-timeout';
  if (code === '55P03') return 'lock-timeout';
  if (code === '40001' || code === '40P01') return 'serialization';
  // admin_shutdown (terminated or fast shutdown), crash_shutdown, cannot_connect_now (starting).
  if (code === '57P01' || code === '57P02' || code === '57P03') return 'terminated';
  if (typeof code === 'string' && /^(08|E[A-Z]+$)/.test(code)) return 'connection';
  return CONNECTION_LOST.test(describe(error)) ? 'connection' : 'unexpected';
}

// How pg and kysely word a connection that broke under them.
const CONNECTION_LOST =
  /Connection terminated|not queryable|connection has been discarded|timeout exceeded when trying to connect|write after end|ERR_STREAM_DESTROYED|Cannot call write after a stream was destroyed/i;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Exponential backoff with jitter, as a client of a flaky service would do. */
function backoffMs(attempt: number): number {
  return Math.min(250, 2 ** Math.min(attempt, 7) * (1 + 3 * rng.next()));
}

async function exit(): Promise<void> {
  // Close the connections properly, but don't let a stuck one keep the process alive.
  setTimeout(() => process.exit(0), 2_000).unref();
  await databases.destroy().catch(() => undefined);
  process.exit(0);
}
