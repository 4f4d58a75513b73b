import { setTimeout as sleep } from 'node:timers/promises';
import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.ts';
import { APPLICATION_NAME } from './server.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';

/** How long the service stays down after a crash, so that clients really meet the outage. */
const OUTAGE_MS = 300;
/** A crash waits up to KILL_AIM_MS for this many payments in flight. */
const KILL_AIM_TRANSACTIONS = 3;
const KILL_AIM_MS = 1_000;

type Fault = 'kill-server' | 'terminate-backends';

/**
 * Breaks things while the storm runs, at set points of its progress: SIGKILLs the service (with
 * transactions in flight, which Postgres then rolls back) and restarts it, and terminates its
 * database connections under it.
 */
export class Chaos {
  serverKills = 0;
  /** Transactions that had claimed a key when their service was killed: cut off by the crash. */
  transactionsCutOff = 0;
  backendsTerminated = 0;
  /** Every service process started, including the ones killed. */
  readonly processes: ServerProcess[];
  private readonly faults: { at: number; fault: Fault }[];
  private queue: Promise<void> = Promise.resolve();
  private failure: unknown;
  private readonly halt = new AbortController();
  private readonly databaseUrl: string;
  private readonly db: Kysely<Database>;
  private readonly target: { url: string };
  private readonly onLog: (line: string) => void;

  constructor(options: {
    server: ServerProcess;
    databaseUrl: string;
    db: Kysely<Database>;
    target: { url: string };
    onLog: (line: string) => void;
    /** Faults by the number of finished logical requests at which they strike. */
    faults: { at: number; fault: Fault }[];
  }) {
    this.processes = [options.server];
    this.databaseUrl = options.databaseUrl;
    this.db = options.db;
    this.target = options.target;
    this.onLog = options.onLog;
    this.faults = [...options.faults].sort((a, b) => a.at - b.at);
  }

  get server(): ServerProcess {
    return this.processes.at(-1) as ServerProcess;
  }

  /** Called as logical requests finish; never blocks the storm. */
  onProgress(done: number): void {
    while (this.faults.length > 0 && (this.faults[0]?.at ?? Infinity) <= done) {
      const { fault } = this.faults.shift() as { fault: Fault };
      this.queue = this.queue
        .then(() => (fault === 'kill-server' ? this.crashAndRestart() : this.terminateBackends()))
        .catch((error: unknown) => {
          this.failure ??= error;
          this.halt.abort();
        });
    }
  }

  /** Aborted when a fault could not be carried out (say, the service would not restart). */
  get halted(): AbortSignal {
    return this.halt.signal;
  }

  /** Waits for the faults under way; throws if one could not be carried out. */
  async settled(): Promise<void> {
    await this.queue;
    if (this.failure) throw this.failure;
  }

  private async crashAndRestart(): Promise<void> {
    const { port } = this.server;
    this.transactionsCutOff += await this.waitForOpenTransactions();
    await this.server.kill();
    this.serverKills++;
    await sleep(OUTAGE_MS);
    let next: ServerProcess;
    try {
      next = await startServerProcess(this.databaseUrl, port, this.onLog);
    } catch {
      // Someone else took the port during the outage; clients follow the service to a new one.
      next = await startServerProcess(this.databaseUrl, 0, this.onLog);
    }
    this.processes.push(next);
    this.target.url = `http://127.0.0.1:${next.port}`;
  }

  /**
   * Waits (briefly) for a moment with several payments being created, so that the crash cuts
   * transactions off rather than landing between them. Returns how many were open.
   */
  private async waitForOpenTransactions(): Promise<number> {
    const until = Date.now() + KILL_AIM_MS;
    for (;;) {
      // A transaction with an id has written: it holds a claimed key.
      const { rows } = await sql<{ open: number }>`
        select count(*)::int as open
          from pg_stat_activity
         where application_name = ${APPLICATION_NAME} and datname = current_database()
           and backend_xid is not null`.execute(this.db);
      const open = rows[0]?.open ?? 0;
      if (open >= KILL_AIM_TRANSACTIONS || Date.now() > until) return open;
      await sleep(5);
    }
  }

  private async terminateBackends(): Promise<void> {
    await sql`
      select pg_terminate_backend(pid)
        from pg_stat_activity
       where application_name = ${APPLICATION_NAME} and datname = current_database()`.execute(
      this.db,
    );
    this.backendsTerminated++;
  }
}
