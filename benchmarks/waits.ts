// What the benchmark's Postgres sessions were doing, sampled from pg_stat_activity: running on a
// CPU, waiting for a lock, for the WAL flush, or for the client (Node) to send the next statement.
// This tells what bounds a variant better than its throughput alone.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

const INTERVAL_MS = 25;

/** Average number of sessions in each state over a window. */
export type WaitProfile = Record<string, number>;

export interface WaitSampler {
  /** Starts a new window. */
  begin(): void;
  /** Ends the window and returns its profile. */
  end(): WaitProfile;
  stop(): Promise<void>;
}

export async function startWaitSampler(url: string): Promise<WaitSampler> {
  // Its own connection, outside the measured pool and its round-trip counter.
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // a failure surfaces in the loop's query
  await client.connect();
  let counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{ state: string }>(`
        select case
                 when state = 'active' and wait_event is null then 'running (CPU)'
                 when state = 'active' then wait_event_type || ':' || wait_event
                 when state = 'idle in transaction' then 'in transaction, waiting for client'
                 else coalesce(state, '?')
               end as state
          from pg_stat_activity
         where datname = current_database() and backend_type = 'client backend'
           and pid <> pg_backend_pid()`);
      for (const { state } of rows) counts.set(state, (counts.get(state) ?? 0) + 1);
      samples++;
      await sleep(INTERVAL_MS);
    }
  })().catch(() => {
    // Sampling is commentary: if its connection fails, the windows just come back empty.
    running = false;
  });
  return {
    begin() {
      counts = new Map();
      samples = 0;
    },
    end() {
      const profile: WaitProfile = {};
      for (const [state, count] of [...counts].sort((a, b) => b[1] - a[1])) {
        profile[state] = count / (samples || 1);
      }
      return profile;
    },
    async stop() {
      running = false;
      await loop.finally(() => client.end());
    },
  };
}

/** Runs `run` in a window of its own and attaches the window's profile to its result. */
export async function sampled<T extends object>(
  sampler: WaitSampler,
  run: () => Promise<T>,
): Promise<T & { waits: WaitProfile }> {
  sampler.begin();
  const result = await run();
  return { ...result, waits: sampler.end() };
}
