/**
 * The heartbeat keeps a long step's lease; a process stopped (SIGSTOP) past its lease loses it to
 * a retry, and once continued commits nothing and reports the lost lease.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { IdempotencyConflictError } from '../../src/index.ts';
import { runOperation } from '../../src/operations/index.ts';
import { deferred } from '../support/barrier.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { pausableOperation } from './pausable-operation.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m10:heartbeat';
const LEASE_MS = 300;

/** Resolves once the database clock is `ms` past the operation's creation. */
const databaseTimePast = (key: string, ms: number) =>
  expect
    .poll(
      async () => {
        const { rows } = await sql<{ past: boolean }>`
          select clock_timestamp() > created_at + ${ms} * interval '1 millisecond' as past
            from idempotency.operations where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
        return rows[0]?.past;
      },
      { timeout: 30_000, interval: 20 },
    )
    .toBe(true);

it('renews the lease while a step runs past it: a duplicate meanwhile is refused, not let in', async () => {
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
    leaseMs: LEASE_MS,
  });
  await inside.promise;
  await databaseTimePast(key, 3 * LEASE_MS);
  await expect(
    runOperation(fx.db, operation, { scope: SCOPE, key, request: null, onConcurrent: 'reject' }),
  ).rejects.toBeInstanceOf(IdempotencyConflictError);
  release.resolve();
  expect(await holder).toMatchObject({ response: { token: '1' }, resumed: false });
  expect(await fx.countPayments(key)).toBe(1);
});

it('shuts out a process stopped past its lease: continued, it commits nothing and reports the lost lease', async () => {
  const key = uniqueKey();
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(new URL('./support/paused-child.ts', import.meta.url)),
      fx.url,
      SCOPE,
      key,
      String(LEASE_MS),
      String(4 * LEASE_MS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  const saidInside = deferred();
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.includes('inside')) saidInside.resolve();
  });
  const exited = once(child, 'exit');
  try {
    await saidInside.promise;
    child.kill('SIGSTOP');
    // Stopped, its heartbeat is too: the lease runs out by the database clock, and a retry takes
    // over, writes its own payment and finishes.
    await expect
      .poll(
        () =>
          runOperation(
            fx.db,
            pausableOperation(async () => undefined),
            {
              scope: SCOPE,
              key,
              request: null,
              onConcurrent: 'reject',
            },
          ).catch((error: unknown) => error),
        { timeout: 30_000, interval: 50 },
      )
      .toMatchObject({ resumed: true, response: { token: '2' } });
  } finally {
    child.kill('SIGCONT');
  }
  await exited;
  expect(output).toContain('failed OperationLeaseLostError');
  expect(await fx.countPayments(key)).toBe(1);
});
