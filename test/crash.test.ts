import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { withIdempotency } from '../src/index.ts';
import { deferred } from './support/barrier.ts';
import { createPayment, uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** Terminates backend `pid` from another session once it is running a statement. */
async function terminateWhenActive(pid: number | undefined) {
  const state = async () => {
    const { rows } = await sql<{ state: string | null }>`
      select state from pg_stat_activity where pid = ${pid}`.execute(fx.db);
    return rows[0]?.state;
  };
  await expect
    .poll(state, {
      timeout: 10_000,
      interval: 5,
      message: `backend ${pid} to be running its statement before it is terminated`,
    })
    .toBe('active');
  await sql`select pg_terminate_backend(${pid})`.execute(fx.db);
}

describe('crashes', () => {
  it('commits nothing when the backend is terminated while fn runs, and the retry executes once', async () => {
    const key = uniqueKey();
    const backend = deferred<number | undefined>();
    const killed = withIdempotency(fx.db, { scope: 's', key }, async (trx) => {
      await createPayment('s', key)(trx);
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
      backend.resolve(rows[0]?.pid);
      // fn is inside a statement when its backend dies, as in a failover or an OOM kill.
      await sql`select pg_sleep(30)`.execute(trx);
      return 'unreachable';
    });
    // Should a wait below fail, the test reports that, not this call's later rejection.
    killed.catch(() => undefined);
    // A call that fails before fn has started reports its error here instead of hanging.
    await terminateWhenActive(await Promise.race([backend.promise, killed.then(() => undefined)]));
    await expect(killed).rejects.toThrow();
    expect(await fx.countPayments(key)).toBe(0);
    expect(await fx.countEntries(key)).toBe(0);

    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('commits nothing when the client process is SIGKILLed inside fn, and the retry executes once', async () => {
    const key = uniqueKey();
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('./support/crash-child.ts', import.meta.url)), fx.url, 's', key],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
    expect(chunk.toString()).toContain('inside-fn');
    // The payment is written but not committed: nobody else can see it yet.
    expect(await fx.countPayments(key)).toBe(0);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;

    // The retry waits, if need be, until Postgres notices the dead connection and rolls back.
    const retry = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(retry.replayed).toBe(false);
    expect(await fx.countPayments(key)).toBe(1);
    const replay = await withIdempotency(fx.db, { scope: 's', key }, createPayment('s', key));
    expect(replay).toEqual({ response: retry.response, replayed: true });
  });
});
