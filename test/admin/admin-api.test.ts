// idempotency-ledger/admin as a program calls it: what it reads, what releaseKey changes (and the
// fencing that keeps a running attempt from writing into a released operation), and bad input.

import { setTimeout } from 'node:timers/promises';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  inspectKey,
  ledgerStats,
  listEntries,
  listStuckOperations,
  releaseKey,
} from '../../src/admin/index.ts';
import { scopeRange } from '../../src/admin/scope-range.ts';
import {
  cleanupExpired,
  fingerprintRequest,
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  withIdempotency,
} from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  OperationLeaseLostError,
  runOperation,
} from '../../src/operations/index.ts';
import {
  ABANDONED,
  EXPIRED_KEY,
  FINISHED,
  HELD,
  LIVE,
  OPS,
  SHOP1,
  SHOP2,
  useAdminFixture,
  WILD,
} from '../support/admin-fixture.ts';
import { deferred } from '../support/barrier.ts';
import { createPayment, type Database } from '../support/ledger-fixture.ts';

const admin = useAdminFixture();

describe('scopeRange', () => {
  it('bounds a prefix by the next text after every text that starts with it', () => {
    expect(scopeRange('shop:1')).toEqual({ from: 'shop:1', to: 'shop:2' });
    expect(scopeRange('shop_%')).toEqual({ from: 'shop_%', to: 'shop_&' });
    expect(scopeRange('')).toEqual({ from: '', to: null });
    expect(scopeRange('a\u{10ffff}')).toEqual({ from: 'a\u{10ffff}', to: 'b' });
    expect(scopeRange('\u{10ffff}')).toEqual({ from: '\u{10ffff}', to: null });
    expect(scopeRange('x\ud7ff')).toEqual({ from: 'x\ud7ff', to: 'x\ue000' });
    expect(scopeRange('é')).toEqual({ from: 'é', to: 'ê' });
  });
});

describe('inspectKey', () => {
  it('describes an entry by its state, times, fingerprint and response size, never its body', async () => {
    const key = 'inspect-me';
    const request = { amount: 4200 };
    const { response } = await withIdempotency(
      admin.fx.db,
      { scope: SHOP1, key, request, ttlMs: 60_000 },
      createPayment(SHOP1, key),
    );
    const found = await inspectKey(admin.fx.db, { scope: SHOP1, key });
    expect(found).toMatchObject({ scope: SHOP1, key, operation: null });
    if (found.entry.state !== 'live') throw new Error(`entry is ${found.entry.state}`);
    expect(found.entry.fingerprint).toBe(fingerprintRequest(request).toString('hex'));
    expect(found.entry.responseBytes).toBe(Buffer.byteLength(JSON.stringify(response)));
    expect(found.entry.expiresInMs).toBeGreaterThan(50_000);
    expect(found.entry.expiresInMs).toBeLessThanOrEqual(60_000);
    expect(found.entry.expiresAt.getTime() - found.entry.createdAt.getTime()).toBeGreaterThan(
      59_000,
    );
    expect(JSON.stringify(found)).not.toContain('paymentId');
  });

  it('tells an expired entry and an absent one apart', async () => {
    const expired = await inspectKey(admin.fx.db, { scope: SHOP1, key: EXPIRED_KEY });
    expect(expired.entry).toMatchObject({ state: 'expired', fingerprint: null });
    expect(expired.entry.state === 'expired' && expired.entry.expiresInMs).toBeLessThan(0);
    const absent = await inspectKey(admin.fx.db, { scope: SHOP1, key: 'nobody' });
    expect(absent).toEqual({
      scope: SHOP1,
      key: 'nobody',
      entry: { state: 'absent' },
      operation: null,
    });
  });

  it("describes an operation's lease and steps, with their sizes", async () => {
    const abandoned = await inspectKey(admin.fx.db, { scope: OPS, key: ABANDONED });
    expect(abandoned.entry).toEqual({ state: 'absent' });
    expect(abandoned.operation).toMatchObject({
      state: 'in_progress',
      attempts: 1,
      fencingToken: '1',
      leaseRemainingMs: null,
      responseBytes: null,
      steps: [{ name: 'create-order', resultBytes: '{"order":"o-1"}'.length, fencingToken: '1' }],
    });
    const held = await inspectKey(admin.fx.db, { scope: OPS, key: HELD });
    expect(held.operation?.leaseRemainingMs).toBeGreaterThan(500_000);
    const finished = await inspectKey(admin.fx.db, { scope: OPS, key: FINISHED });
    expect(finished.operation).toMatchObject({ state: 'finished', responseBytes: 14 });
    expect(finished.operation?.steps.map((step) => step.name)).toEqual(['create-order', 'charge']);
  });
});

describe('releaseKey', () => {
  it('keeps a released operation in progress, so an attempt still running can never write into its next run', async () => {
    const key = 'op-running';
    // Each run of the step 'second' waits at its own gate before its business write.
    const gates = [
      { entered: deferred(), carryOn: deferred() },
      { entered: deferred(), carryOn: deferred() },
    ];
    let runs = 0;
    const blocking = defineOperation({
      name: 'admin-blocking',
      async run(op: OperationContext<Database>) {
        await op.step('first', async () => ({ ok: true }));
        await op.step('second', async (trx) => {
          const gate = gates[runs++];
          gate?.entered.resolve();
          await gate?.carryOn.promise;
          await createPayment(op.scope, op.key)(trx);
          return null;
        });
        return op.finish(async () => null);
      },
    });
    const options = { scope: OPS, key, request: null, leaseMs: 600_000 };
    const stale = runOperation(admin.fx.db, blocking, options).catch((error: unknown) => error);
    // However the test ends, no attempt is left waiting with a connection.
    onTestFinished(() => {
      for (const gate of gates) gate.carryOn.resolve();
    });
    await gates[0]?.entered.promise;

    expect(await releaseKey(admin.fx.db, { scope: OPS, key })).toMatchObject({
      outcome: 'refused',
      reason: 'live_lease',
    });
    expect(await releaseKey(admin.fx.db, { scope: OPS, key, force: true })).toMatchObject({
      outcome: 'released',
      entryDeleted: false,
      operationReleased: { leaseWasLive: true },
    });
    // Released, not retired: still in progress with its steps, so cleanup leaves it alone.
    await cleanupExpired(admin.fx.db);
    expect(await admin.operationRow(key)).toMatchObject({
      state: 'in_progress',
      fencing_token: '2',
      lease_expires_at: null,
    });

    // The client's retry resumes it from its last recorded step, while the stale attempt still
    // waits inside 'second'.
    const retry = runOperation(admin.fx.db, blocking, options);
    await gates[1]?.entered.promise;
    gates[0]?.carryOn.resolve();
    expect(await stale).toBeInstanceOf(OperationLeaseLostError);
    expect(await admin.fx.countPayments(key)).toBe(0);
    gates[1]?.carryOn.resolve();
    expect(await retry).toMatchObject({ replayed: false, resumed: true });
    expect(await admin.fx.countPayments(key)).toBe(1);
    expect(Number((await admin.operationRow(key))?.fencing_token)).toBe(3);
  });

  it('deletes the entry and nothing else; a retry then executes again', async () => {
    const before = await admin.counts();
    const [scope, key] = LIVE[0] ?? ['', ''];
    const shown = await inspectKey(admin.fx.db, { scope, key });
    expect(await releaseKey(admin.fx.db, { scope, key })).toEqual({
      outcome: 'released',
      entryDeleted: true,
      // The entry it deleted, to compare with what inspectKey showed.
      entryCreatedAt: shown.entry.state === 'live' ? shown.entry.createdAt : 'not live',
      operationReleased: null,
    });
    expect(await admin.counts()).toEqual({ ...before, ledger: (before?.ledger ?? 0) - 1 });
    const retry = await withIdempotency(
      admin.fx.db,
      { scope, key, request: { n: 0 } },
      createPayment(scope, key),
    );
    expect(retry.replayed).toBe(false);
    expect(await admin.fx.countPayments(key, scope)).toBe(2);
    expect(await releaseKey(admin.fx.db, { scope: WILD, key: 'nobody' })).toEqual({
      outcome: 'nothing_to_release',
    });
  });

  it('refuses at once an entry a call is taking over, which keeps it: its effect happens once', async () => {
    const taking = deferred();
    const carryOn = deferred();
    const takeover = withIdempotency(
      admin.fx.db,
      { scope: SHOP1, key: EXPIRED_KEY },
      async (trx) => {
        const response = await createPayment(SHOP1, EXPIRED_KEY)(trx);
        taking.resolve();
        await carryOn.promise;
        return response;
      },
    );
    onTestFinished(() => carryOn.resolve());
    await taking.promise;

    // The release must decide while the takeover holds the row: it is let go only once the
    // release has answered, or is waiting for the row's lock.
    let answered = false;
    const releasing = releaseKey(admin.fx.db, { scope: SHOP1, key: EXPIRED_KEY }).finally(() => {
      answered = true;
    });
    while (!answered && (await lockWaiters()) === 0) await setTimeout(5);
    carryOn.resolve();
    await takeover;
    expect(await releasing).toEqual({ outcome: 'refused', reason: 'locked' });

    expect((await inspectKey(admin.fx.db, { scope: SHOP1, key: EXPIRED_KEY })).entry.state).toBe(
      'live',
    );
    const retry = await withIdempotency(
      admin.fx.db,
      { scope: SHOP1, key: EXPIRED_KEY },
      createPayment(SHOP1, EXPIRED_KEY),
    );
    expect(retry.replayed).toBe(true);
    expect(await admin.fx.countPayments(EXPIRED_KEY, SHOP1)).toBe(1);
  });

  it('cannot see a first claim before it commits: nothing to release, and the call commits', async () => {
    const key = 'first-claim';
    const claimed = deferred();
    const carryOn = deferred();
    const call = withIdempotency(admin.fx.db, { scope: SHOP1, key }, async (trx) => {
      const response = await createPayment(SHOP1, key)(trx);
      claimed.resolve();
      await carryOn.promise;
      return response;
    });
    onTestFinished(() => carryOn.resolve());
    await claimed.promise;
    expect(await releaseKey(admin.fx.db, { scope: SHOP1, key })).toEqual({
      outcome: 'nothing_to_release',
    });
    carryOn.resolve();
    await call;
    expect(await admin.fx.countEntries(key, SHOP1)).toBe(1);
    expect(await admin.fx.countPayments(key, SHOP1)).toBe(1);
  });

  it('refuses at once an operation whose row a call holds, changing nothing', async () => {
    const client = await admin.fx.pool.connect();
    try {
      await client.query('begin');
      await client.query(`select 1 from idempotency.operations where key = $1 for update`, [
        ABANDONED,
      ]);
      expect(await releaseKey(admin.fx.db, { scope: OPS, key: ABANDONED })).toEqual({
        outcome: 'refused',
        reason: 'locked',
      });
    } finally {
      await client.query('rollback');
      client.release();
    }
    expect(await admin.operationRow(ABANDONED)).toMatchObject({
      state: 'in_progress',
      fencing_token: '1',
    });
  });
});

/** The statements `work` sends as they reach Postgres, with their parameters. */
async function statementsOf(
  work: (db: Kysely<Database>) => Promise<unknown>,
): Promise<{ sql: string; parameters: readonly unknown[] }[]> {
  const sent: { sql: string; parameters: readonly unknown[] }[] = [];
  // Never destroyed: the pool is the fixture's.
  const logged = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: admin.fx.pool }),
    log: (event) => {
      if (event.level === 'query') sent.push(event.query);
    },
  });
  await work(logged);
  return sent;
}

/**
 * The index conditions of the plans of `statements`, as "index name: condition". A table this
 * small is read sequentially; without that way out (enable_seqscan off), a comparison an index can
 * serve becomes an index condition, and one it cannot (with a volatile function's result) a filter
 * over every entry of the index.
 */
async function indexConditionsOf(
  statements: { sql: string; parameters: readonly unknown[] }[],
): Promise<string[]> {
  const found: string[] = [];
  const client = await admin.fx.pool.connect();
  try {
    await client.query('begin');
    await client.query('set local enable_seqscan = off');
    for (const statement of statements) {
      const { rows } = await client.query(`explain (format json) ${statement.sql}`, [
        ...statement.parameters,
      ]);
      collectIndexConditions(rows[0]['QUERY PLAN'][0].Plan, found);
    }
  } finally {
    await client.query('rollback');
    client.release();
  }
  return found;
}

/** Each plan node's index condition, as "index name: condition", this node's and below. */
function collectIndexConditions(plan: Record<string, unknown>, found: string[]): void {
  if (typeof plan['Index Cond'] === 'string') {
    found.push(`${String(plan['Index Name'])}: ${plan['Index Cond']}`);
  }
  for (const child of (plan.Plans as Record<string, unknown>[] | undefined) ?? []) {
    collectIndexConditions(child, found);
  }
}

/** Sessions of the test database waiting for a lock, as Postgres reports them. */
async function lockWaiters(): Promise<number> {
  const { rows } = await sql<{ waiting: number }>`
    select count(*)::int as waiting from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock'`.execute(admin.fx.db);
  return rows[0]?.waiting ?? 0;
}

describe('listings and stats', () => {
  it('takes a scope prefix literally', async () => {
    const wild = await listEntries(admin.fx.db, { scopePrefix: 'shop_' });
    expect(wild.map((entry) => entry.scope)).toEqual([WILD]);
    const shop1 = await listEntries(admin.fx.db, { scopePrefix: 'shop:1', state: 'expired' });
    expect(shop1.map((entry) => entry.key)).toEqual([EXPIRED_KEY]);
  });

  it('lists stuck operations: no lease, or many attempts', async () => {
    const stuck = await listStuckOperations(admin.fx.db);
    expect(stuck.map((op) => [op.key, op.reasons])).toEqual([[ABANDONED, ['no_lease']]]);
    const many = await listStuckOperations(admin.fx.db, { minAttempts: 1 });
    expect(many.map((op) => [op.key, op.reasons])).toEqual([
      [ABANDONED, ['no_lease', 'attempts']],
      [HELD, ['attempts']],
    ]);
  });

  it('counts the same in estimate mode once the table is analyzed', async () => {
    await sql`analyze idempotency.ledger`.execute(admin.fx.db);
    const exact = await ledgerStats(admin.fx.db);
    const estimate = await ledgerStats(admin.fx.db, { estimate: true });
    expect(exact.entries).toEqual({ live: LIVE.length, expired: 1, total: LIVE.length + 1 });
    expect(estimate).toMatchObject({
      exact: false,
      entries: exact.entries,
      topScopesByEntries: null,
    });
  });

  it('counts expired rows through the expires_at indexes, not by reading every index entry', async () => {
    const sent = await statementsOf((db) => ledgerStats(db, { estimate: true }));
    const counting = sent.filter((query) => /expires_at\s*<=/.test(query.sql));
    expect(counting).toHaveLength(2);
    expect(await indexConditionsOf(counting)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^ledger_expires_at_idx: \(expires_at <= /),
        expect.stringMatching(/^operations_expires_at_idx: \(expires_at <= /),
      ]),
    );
  });

  it('lists expired entries without a prefix through ledger_expires_at_idx, oldest expiry first', async () => {
    await sql`update idempotency.ledger set expires_at = clock_timestamp() - interval '2 hours'
               where scope = ${SHOP2} and key = 'k-1'`.execute(admin.fx.db);
    const sent = await statementsOf((db) => listEntries(db, { state: 'expired' }));
    expect(sent).toHaveLength(1);
    expect(await indexConditionsOf(sent)).toEqual([
      expect.stringMatching(/^ledger_expires_at_idx: \(expires_at <= /),
    ]);
    const expired = await listEntries(admin.fx.db, { state: 'expired' });
    expect(expired.map((entry) => [entry.scope, entry.key])).toEqual([
      [SHOP2, 'k-1'],
      [SHOP1, EXPIRED_KEY],
    ]);
  });

  it('refuses bad options by name, never quoting a key, and a schema without the ledger', async () => {
    const secret = 'sk_live_secret';
    const calls = [
      () => inspectKey(admin.fx.db, { scope: '', key: secret }),
      () => releaseKey(admin.fx.db, { scope: SHOP1, key: '' }),
      () => listEntries(admin.fx.db, { limit: 0 }),
      () => listStuckOperations(admin.fx.db, { limit: 1.5 }),
      () => ledgerStats(admin.fx.db, { top: -1 }),
      () => releaseKey(admin.fx.db, { scope: SHOP1, key: secret, extra: 1 } as never),
    ];
    for (const call of calls) {
      const error = await call().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
      expect((error as Error).message).not.toContain(secret);
    }
    await expect(
      inspectKey(admin.fx.db, { scope: SHOP1, key: 'k', schema: 'nowhere' }),
    ).rejects.toBeInstanceOf(LedgerSchemaError);
    await expect(ledgerStats(admin.fx.db, { schema: 'nowhere' })).rejects.toBeInstanceOf(
      LedgerSchemaError,
    );
  });
});
