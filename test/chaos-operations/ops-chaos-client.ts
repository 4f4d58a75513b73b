/**
 * An operations chaos client process, started by the runner with fork(); its settings are the
 * first argument, as JSON. It sends the payments the runner gives it, a few at a time, each until
 * it gets an answer, retrying every failure with the same key and request as a real client would.
 * It carries out the faults the runner arms it with: SIGKILL at a boundary, a SIGSTOP of itself
 * at a boundary (the runner lets another attempt take over, then sends SIGCONT), or its connection
 * cut as a COMMIT goes out. A takeover it is asked to make holds at the paused attempt's boundary
 * until the runner has let the paused one go on.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { Prng } from '../chaos/prng.ts';
import { type BoundaryHook, chaosPaymentOperation } from './chaos-payment.ts';
import { loadOperationsLibrary } from './operations-library.ts';
import type {
  ClientConfig,
  ClientFault,
  ClientMessage,
  FailureClass,
  PausePoint,
  PaymentSpec,
  RunnerMessage,
} from './ops-chaos-protocol.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as ClientConfig;
const rng = new Prng(config.seed);
const library = await loadOperationsLibrary(config.libraryDir);
const { core, operations } = library;

const report = (message: ClientMessage, sent?: () => void) => {
  if (process.connected) process.send?.(message, undefined, {}, () => sent?.());
};

let armed: ClientFault | undefined;
let calm = false;
/** Takeovers the runner asked for: hold a newer attempt at `point` until released. */
const holds = new Map<number, { point: PausePoint; afterToken: bigint; release?: () => void }>();
/** The attempt each hook call belongs to. */
const attempts = new AsyncLocalStorage<{ paymentId: number; paused: boolean }>();

const pool = new pg.Pool({
  connectionString: config.url,
  application_name: `ops-chaos-client-${config.slot}`,
  // One connection per payment in flight, and one for the heartbeats and lease releases.
  max: config.inFlight + 1,
  connectionTimeoutMillis: 10_000,
});
// Backends are terminated under the clients on purpose: the query in flight reports it.
pool.on('error', () => undefined);
pool.on('connect', (client) => {
  client.on('error', () => undefined);
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  client.query = ((...args: unknown[]) => {
    const [first] = args;
    const text = typeof first === 'string' ? first : ((first as { text?: string }).text ?? '');
    if (armed?.kind !== 'cut-commit' || text !== 'commit' || !attempts.getStore()) {
      return query(...args);
    }
    armed = undefined;
    report({ type: 'fired', fault: { kind: 'cut-commit' } });
    // COMMIT goes out, then the connection is cut: it may or may not have committed.
    const reply = query(...args);
    (client as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
    return reply;
  }) as typeof client.query;
});
const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });

const at: BoundaryHook = async (boundary, attempt) => {
  const current = attempts.getStore();
  if (!current) return;
  const hold = holds.get(current.paymentId);
  if (hold && hold.point === boundary && BigInt(attempt.fencingToken) > hold.afterToken) {
    // The newer holder waits here, with its lease (renewed), while the paused one goes on.
    await new Promise<void>((resolve) => {
      hold.release = resolve;
      report({ type: 'holding', paymentId: current.paymentId, token: attempt.fencingToken });
    });
    holds.delete(current.paymentId);
    return;
  }
  const fault = armed;
  if (!fault || fault.kind === 'cut-commit' || fault.point !== boundary) return;
  armed = undefined;
  if (fault.kind === 'kill') {
    report({ type: 'fired', fault }, () => process.kill(process.pid, 'SIGKILL'));
    // Nothing of this attempt may go on while the report is on its way.
    await new Promise(() => undefined);
  }
  current.paused = true;
  report({ type: 'fired', fault });
  await new Promise<void>((resolve) => {
    report(
      {
        type: 'pausing',
        paymentId: current.paymentId,
        point: fault.kind === 'pause' ? fault.point : 'in-order',
        token: attempt.fencingToken,
      },
      () => {
        // Stops right here, inside the attempt, until the runner sends SIGCONT.
        process.kill(process.pid, 'SIGSTOP');
        resolve();
      },
    );
  });
};

const operation = chaosPaymentOperation(library, config.providerUrl, at);

process.on('message', (message: RunnerMessage) => {
  switch (message.type) {
    case 'work':
      void sendAll(message.payments);
      break;
    case 'arm':
      if (!calm) armed = message.fault;
      break;
    case 'takeover':
      holds.set(message.payment.id, {
        point: message.point,
        afterToken: BigInt(message.afterToken),
      });
      void send(message.payment);
      break;
    case 'release-hold':
      holds.get(message.paymentId)?.release?.();
      holds.delete(message.paymentId);
      break;
    case 'calm':
      calm = true;
      armed = undefined;
      break;
    case 'exit':
      void exit();
  }
});
process.on('disconnect', () => process.exit(0));

async function sendAll(payments: PaymentSpec[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let payment = payments[next++]; payment; payment = payments[next++]) await send(payment);
  };
  await Promise.all(Array.from({ length: config.inFlight }, worker));
}

/** Sends one payment until it is answered, as a client with a retry policy would. */
async function send(payment: PaymentSpec): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const state = { paymentId: payment.id, paused: false };
    report({ type: 'attempt', paymentId: payment.id });
    try {
      const result = await attempts.run(state, () =>
        operations.runOperation(db, operation, {
          scope: payment.scope,
          key: payment.key,
          request: payment.request,
          leaseMs: config.leaseMs,
          onConcurrent: rng.chance(0.2) ? 'reject' : 'wait',
          waitTimeoutMs: 5_000,
        }),
      );
      if (state.paused) {
        report({ type: 'paused-attempt-ended', paymentId: payment.id, outcome: 'answered' });
      }
      if (!result.replayed) {
        // Finished and committed, the answer not yet out: a crash here loses only the answer.
        const done = { scope: payment.scope, key: payment.key, fencingToken: '0', resumed: false };
        await attempts.run(state, () => at('after-finish', done));
      }
      report({
        type: 'answered',
        paymentId: payment.id,
        response: JSON.stringify(result.response),
        replayed: result.replayed,
        resumed: result.resumed,
      });
      return;
    } catch (error) {
      const failure = classify(error);
      if (state.paused) {
        report({ type: 'paused-attempt-ended', paymentId: payment.id, outcome: failure });
      }
      report({ type: 'failed', paymentId: payment.id, failure, message: describe(error) });
      await sleep(Math.min(200, 10 * 2 ** Math.min(attempt, 5) * (1 + rng.next())));
    }
  }
}

function classify(error: unknown): FailureClass {
  if (error instanceof operations.OperationPendingError) return 'pending';
  if (error instanceof operations.OperationLeaseLostError) return 'lease-lost';
  if (error instanceof core.IdempotencyConflictError) return 'conflict';
  // Any other library error (a 422 for an unchanged request, a bad option) is a bug.
  if (error instanceof core.IdempotencyError) return 'unexpected';
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(08|57P0|40001|40P01|E[A-Z]+$)/.test(code)) return 'database';
  return CONNECTION_LOST.test(describe(error)) ? 'database' : 'unexpected';
}

// How pg and kysely word a connection that broke under them.
const CONNECTION_LOST =
  /Connection terminated|not queryable|connection has been discarded|timeout exceeded when trying to connect|write after end|ERR_STREAM_DESTROYED|Cannot call write after a stream was destroyed/i;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

async function exit(): Promise<void> {
  setTimeout(() => process.exit(0), 2_000).unref();
  await db.destroy().catch(() => undefined);
  process.exit(0);
}
