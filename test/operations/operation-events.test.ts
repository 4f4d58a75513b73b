/**
 * The events operations publish on node:diagnostics_channel: each runOperation call with its
 * outcome, and every change of an attempt's lease (acquired, taken over, renewed, released, lost,
 * fenced off), with a keyed hash of the key and never the key itself.
 */
import { channel, tracingChannel } from 'node:diagnostics_channel';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashIdempotencyKey, IdempotencyConflictError } from '../../src/index.ts';
import {
  defineOperation,
  OPERATION_LEASE_CHANNEL,
  type OperationContext,
  type OperationLeaseEvent,
  OperationLeaseLostError,
  RUN_OPERATION_CHANNEL,
  type RunOperationEvent,
  releaseOperation,
  runOperation,
} from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { pausableOperation } from './pausable-operation.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m12:events';
const runs = tracingChannel<RunOperationEvent, RunOperationEvent>(RUN_OPERATION_CHANNEL);
const leases = channel(OPERATION_LEASE_CHANNEL);

let ended: RunOperationEvent[] = [];
let leaseEvents: OperationLeaseEvent[] = [];
const runSubscribers = {
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd: (event: RunOperationEvent) => ended.push(event),
  error() {},
};
const onLease = (event: unknown) => leaseEvents.push(event as OperationLeaseEvent);
beforeEach(() => {
  ended = [];
  leaseEvents = [];
  runs.subscribe(runSubscribers);
  leases.subscribe(onLease);
});
afterEach(() => {
  runs.unsubscribe(runSubscribers);
  leases.unsubscribe(onLease);
});

const kinds = () => leaseEvents.map((event) => event.kind);

describe('operation events', () => {
  it('tells a run that finished, then its replay, with a hash instead of the key', async () => {
    const key = uniqueKey();
    const operation = pausableOperation(async () => {});
    await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    expect(ended).toHaveLength(2);
    expect(ended[0]).toMatchObject({
      version: 1,
      operation: 'pausable',
      scope: SCOPE,
      keyHash: hashIdempotencyKey(key),
      outcome: 'finished',
      resumed: false,
      fencingToken: '1',
      heldWaits: 0,
    });
    expect(ended[0]?.durationMs).toBeGreaterThanOrEqual(0);
    expect(ended[1]).toMatchObject({ outcome: 'replayed', heldWaits: 0 });
    expect(ended[1]?.fencingToken).toBeUndefined();
    expect(kinds()).toEqual(['acquired']);
    expect(leaseEvents[0]).toMatchObject({
      operation: 'pausable',
      scope: SCOPE,
      keyHash: hashIdempotencyKey(key),
      fencingToken: '1',
    });
    const { result: _r, error: _e, ...telemetry } = ended[0] as RunOperationEvent;
    expect(JSON.stringify([telemetry, leaseEvents])).not.toContain(key);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('tells renewals, and a conflict after waiting for the holder', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const operation = pausableOperation(async () => {
      inside.resolve();
      await release.promise;
    });
    const holder = runOperation(fx.db, operation, {
      scope: SCOPE,
      key,
      request: null,
      leaseMs: 150,
    });
    await inside.promise;
    await expect.poll(() => kinds().includes('renewed'), { timeout: 10_000 }).toBe(true);
    await expect(
      runOperation(fx.db, operation, { scope: SCOPE, key, request: null, waitTimeoutMs: 200 }),
    ).rejects.toBeInstanceOf(IdempotencyConflictError);
    const conflict = ended.at(-1);
    expect(conflict).toMatchObject({ outcome: 'conflict' });
    expect(conflict?.heldWaits).toBeGreaterThan(0);
    release.resolve();
    await holder;
    expect(ended.at(-1)).toMatchObject({ outcome: 'finished', fencingToken: '1' });
  });

  it('tells a fenced-off attempt, and the retry that takes the operation over', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    let first = true;
    const operation = pausableOperation(async () => {
      if (!first) return;
      first = false;
      inside.resolve();
      await release.promise;
    });
    const attempt = runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    await inside.promise;
    // An operator releases it while the step runs: the step's fenced write will be refused.
    expect(await releaseOperation(fx.db, { scope: SCOPE, key })).toBe(true);
    release.resolve();
    await expect(attempt).rejects.toBeInstanceOf(OperationLeaseLostError);
    expect(ended.at(-1)).toMatchObject({ outcome: 'lease_lost', fencingToken: '1' });
    expect(kinds()).toEqual(['acquired', 'fenced_off']);

    const retry = await runOperation(fx.db, operation, { scope: SCOPE, key, request: null });
    expect(retry).toMatchObject({ resumed: true, replayed: false });
    expect(kinds()).toEqual(['acquired', 'fenced_off', 'taken_over']);
    expect(leaseEvents.at(-1)?.fencingToken).toBe('3');
    expect(ended.at(-1)).toMatchObject({ outcome: 'finished', resumed: true, fencingToken: '3' });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('tells a lease a renewal found lost', async () => {
    const key = uniqueKey();
    const inside = deferred();
    const release = deferred();
    const operation = pausableOperation(async () => {
      inside.resolve();
      await release.promise;
    });
    const attempt = runOperation(fx.db, operation, {
      scope: SCOPE,
      key,
      request: null,
      leaseMs: 150,
    });
    await inside.promise;
    await releaseOperation(fx.db, { scope: SCOPE, key });
    await expect.poll(() => kinds().includes('lost'), { timeout: 10_000 }).toBe(true);
    release.resolve();
    await expect(attempt).rejects.toBeInstanceOf(OperationLeaseLostError);
    // The heartbeat told it first: the refused write is the same loss, not told twice.
    expect(kinds()).not.toContain('fenced_off');
    expect(await fx.countPayments(key)).toBe(0);
  });

  it('tells a failed step, and the lease it released for a retry', async () => {
    const key = uniqueKey();
    const failing = defineOperation({
      name: 'failing',
      async run(op: OperationContext<Database>) {
        await op.step('boom', async () => {
          throw new Error('step failed');
        });
        return op.finish(async () => ({}));
      },
    });
    await expect(
      runOperation(fx.db, failing, { scope: SCOPE, key, request: null }),
    ).rejects.toThrow('step failed');
    expect(ended.at(-1)).toMatchObject({ operation: 'failing', outcome: 'failed' });
    expect(kinds()).toEqual(['acquired', 'released']);
  });

  it('tells an invalid call without its scope or key', async () => {
    const operation = pausableOperation(async () => {});
    await expect(
      runOperation(fx.db, operation, { scope: SCOPE, key: 'x'.repeat(300), request: null }),
    ).rejects.toMatchObject({ status: 400 });
    expect(ended.at(-1)).toMatchObject({ outcome: 'invalid_key', heldWaits: 0 });
    expect(ended.at(-1)?.scope).toBeUndefined();
    expect(leaseEvents).toHaveLength(0);
  });
});
