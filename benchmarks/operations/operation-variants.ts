// The operations family: what `idempotency-ledger/operations` costs around the same business
// write the other sections use (one charges row), next to the bare transaction and to
// withIdempotency. The external call is a no-op async function standing in for the provider, so
// that only the library's own costs are measured.
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type * as Operations from '../../src/operations/index.ts';
import {
  type BenchDB,
  type ChargeRequest,
  type ChargeResponse,
  createCharge,
  insertCharge,
  newChargeRequest,
  SCOPE,
} from '../business.ts';
import { importBuilt, withIdempotency } from '../library.ts';
import { type CellRun, runWorkers } from '../measure.ts';
import { REPLAY_KEYS } from '../variants.ts';
import type { WaitProfile } from '../waits.ts';

const { defineOperation, runOperation } =
  await importBuilt<typeof Operations>('operations/index.js');

export type OperationVariantId =
  | 'bare'
  | 'with-idempotency'
  | 'finish'
  | 'step-finish'
  | 'step-call-finish'
  | 'replay'
  | 'with-idempotency-replay';

export interface OperationRun extends CellRun {
  walBytesPerOp?: number;
  /** Whose WAL walBytesPerOp counts: this database's (pg_walinspect) or the whole server's. */
  walScope?: 'database' | 'server';
  waits?: WaitProfile;
}

/** One variant at one concurrency: a cell of the operations table. */
export interface OperationCell {
  variant: OperationVariantId;
  concurrency: number;
  run(durationMs: number): Promise<OperationRun>;
}

type Db = Kysely<BenchDB>;
type Context = Operations.OperationContext<BenchDB>;
type Pay = (trx: Transaction<BenchDB>) => Promise<ChargeResponse>;

/** The business write: the same INSERT … RETURNING id, and the same 210-byte response. */
const pay =
  (request: ChargeRequest): Pay =>
  (trx) =>
    insertCharge(trx, request);

// Each shape under its own name: the check at the end counts finished operations by name.
const finishOnly = defineOperation({
  name: 'bench-finish',
  run: (op: Context, request: ChargeRequest) => op.finish(pay(request)),
});
const stepFinish = defineOperation({
  name: 'bench-step-finish',
  async run(op: Context, request: ChargeRequest) {
    const charge = await op.step('charge', pay(request));
    return op.finish(async () => charge);
  },
});
const stepCallFinish = defineOperation({
  name: 'bench-step-call-finish',
  async run(op: Context, request: ChargeRequest) {
    const charge = await op.step('charge', pay(request));
    const provider = await op.call('provider', async () => ({ accepted: true }));
    return op.finish(async () => (provider.accepted ? charge : null));
  },
});

/** The operation names this family writes, by variant: see {@link countFinished}. */
export const OPERATION_NAMES: Partial<Record<OperationVariantId, string>> = {
  finish: finishOnly.name,
  'step-finish': stepFinish.name,
  'step-call-finish': stepCallFinish.name,
};

const OPERATIONS = {
  finish: finishOnly,
  'step-finish': stepFinish,
  'step-call-finish': stepCallFinish,
} as const;

/** One execution of a variant that runs once per call (every variant but the replays). */
export function executeOnce(
  db: Db,
  variant: 'bare' | 'with-idempotency' | keyof typeof OPERATIONS,
): Promise<unknown> {
  const request = newChargeRequest();
  if (variant === 'bare') return createCharge(db, request);
  if (variant === 'with-idempotency') {
    return withIdempotency(db, { scope: SCOPE, key: randomUUID(), request }, pay(request)).then(
      ({ replayed }) => {
        if (replayed) throw new Error('a fresh key replayed');
      },
    );
  }
  return runOperation(db, OPERATIONS[variant], { scope: SCOPE, key: randomUUID(), request }).then(
    ({ replayed, resumed }) => {
      if (replayed || resumed) throw new Error('a fresh operation replayed or resumed');
    },
  );
}

export interface ReplayKey {
  key: string;
  request: ChargeRequest;
}

/** Finished operations (step + call + finish) and completed ledger keys for the replay cells. */
export async function prepareReplays(db: Db) {
  const keys = (): ReplayKey[] =>
    Array.from({ length: REPLAY_KEYS }, () => ({ key: randomUUID(), request: newChargeRequest() }));
  const operations = keys();
  const ledger = keys();
  for (const { key, request } of operations) {
    await runOperation(db, stepCallFinish, { scope: SCOPE, key, request });
  }
  for (const { key, request } of ledger) {
    await withIdempotency(db, { scope: SCOPE, key, request }, pay(request));
  }
  return { operations, ledger };
}

/** One replay: of a finished operation, or of a completed withIdempotency key. */
export function replayOnce(
  db: Db,
  variant: 'replay' | 'with-idempotency-replay',
  { key, request }: ReplayKey,
): Promise<void> {
  const replayed =
    variant === 'replay'
      ? runOperation(db, stepCallFinish, { scope: SCOPE, key, request })
      : withIdempotency(db, { scope: SCOPE, key, request }, pay(request));
  return replayed.then((result) => {
    if (!result.replayed) throw new Error('a finished key executed again');
  });
}

/** The cells: every variant at every concurrency. `executed` counts completions by variant. */
export function operationCells(
  db: Db,
  concurrencies: readonly number[],
  replays: Awaited<ReturnType<typeof prepareReplays>>,
  executed: Map<OperationVariantId, number>,
): OperationCell[] {
  const once = (variant: Parameters<typeof executeOnce>[1], c: number): OperationCell => ({
    variant,
    concurrency: c,
    run: (durationMs) =>
      runWorkers(c, durationMs, async () => {
        await executeOnce(db, variant);
        executed.set(variant, (executed.get(variant) ?? 0) + 1);
      }),
  });
  const replay = (variant: 'replay' | 'with-idempotency-replay', c: number): OperationCell => {
    const keys = variant === 'replay' ? replays.operations : replays.ledger;
    let next = 0;
    return {
      variant,
      concurrency: c,
      run: (durationMs) =>
        runWorkers(c, durationMs, () =>
          replayOnce(db, variant, keys[next++ % keys.length] as ReplayKey),
        ),
    };
  };
  return concurrencies.flatMap((c) => [
    once('bare', c),
    once('with-idempotency', c),
    once('finish', c),
    once('step-finish', c),
    once('step-call-finish', c),
    replay('replay', c),
    replay('with-idempotency-replay', c),
  ]);
}
