// The HTTP section: for every framework, the bare route, a first execution through the adapter
// and a replay through it, at c=1 and c=16, interleaved round-robin within each repetition like
// the throughput matrix. The servers run in a child process; the load comes from this one.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Kysely, sql } from 'kysely';
import type { BenchDB } from '../business.ts';
import { POOL_SIZE } from '../database.ts';
import { sampled, type WaitProfile, type WaitSampler } from '../waits.ts';
import { walBytesSince, walPosition } from '../wal.ts';
import { BARE_PATH, createHttpChargesTable, IDEMPOTENT_PATH } from './charge-route.ts';
import { type LoadRun, okCount, type RequestSpec, runLoad } from './load.ts';
import {
  type ServedFramework,
  type ServerProcess,
  startServerProcess,
} from './server-process-client.ts';

export const HTTP_CONCURRENCIES = [1, 16] as const;
export type HttpRoute = 'bare' | 'first' | 'replay';
export const HTTP_ROUTES: readonly HttpRoute[] = ['bare', 'first', 'replay'];

export interface HttpSettings {
  repetitions: number;
  warmupMs: number;
  cellMs: number;
  /** Frameworks to measure, by name; empty for all of them. */
  frameworks: string[];
}

export interface HttpRun extends LoadRun {
  /** Tag of the rows this run's requests wrote (`customer` is `cus_<tag>_<n>`). */
  tag: string;
  /** CPU time of the server process, in cores. */
  serverCores: number;
  /** WAL the server wrote during the run, per 2xx response in the window. */
  walBytesPerOp: number;
  waits: WaitProfile;
}

export interface HttpCellResult {
  framework: string;
  route: HttpRoute;
  concurrency: number;
  warmup?: HttpRun;
  /** One entry per repetition, in order. */
  runs: HttpRun[];
}

export interface HttpResult {
  frameworks: { name: string; version: string }[];
  poolSize: number;
  cells: HttpCellResult[];
  /** What the database says the runs wrote; see checkRows. */
  check: { responses: number; problems: string[] };
}

interface Cell extends HttpCellResult {
  server: ServedFramework;
  replay: RequestSpec;
}

export async function runHttp(
  db: Kysely<BenchDB>,
  url: string,
  settings: HttpSettings,
  sampler: WaitSampler,
  progress: (line: string) => void,
): Promise<HttpResult> {
  await createHttpChargesTable(db);
  const servers = await startServerProcess({
    url,
    poolSize: POOL_SIZE,
    frameworks: settings.frameworks,
  });
  let tags = 0;
  const cells: Cell[] = [];
  try {
    progress(`HTTP servers: ${servers.servers.map((s) => `${s.name} on :${s.port}`).join(', ')}`);
    for (const [index, server] of servers.servers.entries()) {
      const replay = await prepareReplayKey(server, index);
      for (const concurrency of HTTP_CONCURRENCIES) {
        for (const route of HTTP_ROUTES) {
          cells.push({ framework: server.name, route, concurrency, runs: [], server, replay });
        }
      }
    }
    const run = (cell: Cell, durationMs: number) =>
      runCell(db, servers, sampler, cell, `r${tags++}`, durationMs);

    progress(`HTTP warm-up: ${cells.length} cells x ${settings.warmupMs} ms`);
    for (const cell of cells) cell.warmup = await run(cell, settings.warmupMs);
    for (let rep = 0; rep < settings.repetitions; rep++) {
      progress(
        `HTTP repetition ${rep + 1}/${settings.repetitions}: ${cells.length} cells x ${settings.cellMs} ms`,
      );
      // Start each repetition at another cell, so that no cell always follows the same one.
      for (let i = 0; i < cells.length; i++) {
        const cell = cells[(i + rep) % cells.length] as Cell;
        cell.runs.push(await run(cell, settings.cellMs));
      }
    }
  } finally {
    // Waits for the transactions in flight when each run ended: the rows are counted next.
    await servers.stop();
  }
  const results = cells.map(({ server: _, replay: __, ...result }) => result);
  return {
    frameworks: servers.servers.map(({ name, version }) => ({ name, version })),
    poolSize: POOL_SIZE,
    cells: results,
    check: await checkRows(db, results),
  };
}

async function runCell(
  db: Kysely<BenchDB>,
  servers: ServerProcess,
  sampler: WaitSampler,
  cell: Cell,
  tag: string,
  durationMs: number,
): Promise<HttpRun> {
  let sent = 0;
  const next =
    cell.route === 'replay'
      ? () => cell.replay
      : () => ({ key: randomUUID(), body: chargeBody(`cus_${tag}_${sent++}`) });
  const path = cell.route === 'bare' ? BARE_PATH : IDEMPOTENT_PATH;
  const wal = await walPosition(db);
  const cpuBefore = await servers.cpuTimeMs();
  const started = performance.now();
  const load = await sampled(sampler, () =>
    runLoad({ port: cell.server.port, path, concurrency: cell.concurrency, durationMs, next }),
  );
  const serverCores = ((await servers.cpuTimeMs()) - cpuBefore) / (performance.now() - started);
  const walBytesPerOp = (await walBytesSince(db, wal)) / (load.ok || 1);
  failOnErrors(cell, load);
  return { ...load, tag, serverCores, walBytesPerOp };
}

function chargeBody(customer: string): string {
  return JSON.stringify({ customer, amount: 1999, currency: 'eur' });
}

/**
 * Any answer but a 2xx, or a socket error, makes the figures worthless (a 400 is fast): the run
 * stops there and says what came back.
 */
function failOnErrors(cell: HttpCellResult, load: LoadRun): void {
  const ok = okCount(load.statuses);
  const others = Object.entries(load.statuses).filter(([status]) => !/^2/.test(status));
  if (others.length === 0 && load.errors === 0 && load.ok > 0) return;
  const counts = others.map(([status, count]) => `${count} x ${status}`).join(', ') || 'none';
  throw new Error(
    `HTTP ${cell.framework} ${cell.route} c=${cell.concurrency}: ${ok} x 2xx, non-2xx: ${counts}; ` +
      `${load.errors} socket errors (${load.timeouts} timeouts). 400: the route refused the ` +
      'body; 409: key in progress; 422: key reused with another body; 5xx: see stderr.',
  );
}

/** Executes one key through the framework's adapter, and checks that sending it again replays. */
async function prepareReplayKey(server: ServedFramework, index: number): Promise<RequestSpec> {
  const spec = { key: randomUUID(), body: chargeBody(`cus_replay_${index}`) };
  const post = () =>
    fetch(`http://127.0.0.1:${server.port}${IDEMPOTENT_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': spec.key },
      body: spec.body,
    });
  const first = await post();
  const firstBody = await first.text();
  const again = await post();
  const againBody = await again.text();
  if (
    first.status !== 201 ||
    first.headers.has('idempotent-replayed') ||
    again.status !== 201 ||
    again.headers.get('idempotent-replayed') !== 'true' ||
    againBody !== firstBody
  ) {
    throw new Error(
      `HTTP ${server.name}: the replay key did not execute then replay ` +
        `(${first.status}, then ${again.status} replayed=${again.headers.get('idempotent-replayed')})`,
    );
  }
  return spec;
}

/**
 * The database's word on what the runs did, once the servers have stopped: every 2xx of the bare
 * and first-execution routes wrote one row (a run can leave up to `concurrency` requests in
 * flight when it ends, whose rows commit without a response being counted), and replays wrote
 * none (each framework's replay key has its one row).
 */
async function checkRows(
  db: Kysely<BenchDB>,
  cells: HttpCellResult[],
): Promise<HttpResult['check']> {
  const { rows } = await sql<{ tag: string; rows: number }>`
    select split_part(customer, '_', 2) as tag, count(*)::int as rows
      from http_charges group by 1`.execute(db);
  const written = new Map(rows.map((row) => [row.tag, row.rows]));
  const problems: string[] = [];
  let responses = 0;
  for (const cell of cells) {
    for (const run of [...(cell.warmup ? [cell.warmup] : []), ...cell.runs]) {
      const ok = okCount(run.statuses);
      responses += ok;
      // Replays send the replay key's body: their rows are counted below.
      if (cell.route === 'replay') continue;
      const count = written.get(run.tag) ?? 0;
      if (count < ok || count > ok + cell.concurrency) {
        problems.push(
          `${cell.framework} ${cell.route} c=${cell.concurrency} (run ${run.tag}): ${ok} x 2xx, ` +
            `${count} rows written`,
        );
      }
    }
  }
  const replayKeys = new Set(cells.map((cell) => cell.framework)).size;
  if ((written.get('replay') ?? 0) !== replayKeys) {
    problems.push(`replay keys: ${written.get('replay') ?? 0} rows for ${replayKeys} keys`);
  }
  return { responses, problems };
}
