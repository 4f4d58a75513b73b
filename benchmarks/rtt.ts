// The round-trip-time section: the paths that matter, direct and through delay proxies that add
// a network's round trip (production reaches Postgres and Redis across one, 0.1-1 ms a flight).
// Every route also times `SELECT 1` and Redis PING, one at a time: the RTT each route adds, as
// measured, in the same conditions as the rest. A proxy with no delay, against direct, prices the
// proxy itself. All cells are interleaved round-robin within each repetition.
import { type Kysely, sql } from 'kysely';
import type { BenchDB } from './business.ts';
import { countingKysely } from './database.ts';
import { type CellRun, runCount } from './measure.ts';
import { connectRedis, powertoolsCells, type RedisConnection } from './powertools.ts';
import {
  buildDelayProxy,
  type DelayProxy,
  delayProxyUnavailable,
  startDelayProxy,
} from './rtt-proxy/start-delay-proxy.ts';
import { CONCURRENCIES } from './throughput.ts';
import {
  bareCell,
  type Cell,
  firstExecutionCell,
  prepareReplayKeys,
  replayCell,
  type VariantId,
} from './variants.ts';

/** One-way delays of the proxied levels: round trips ~0.2 ms and ~1 ms longer. */
export const ONE_WAY_DELAYS_US = [100, 500] as const;

export interface RttSettings {
  repetitions: number;
  warmupMs: number;
  cellMs: number;
  /** `SELECT 1` (and PING) round trips timed per route and repetition to verify the added RTT. */
  pings: number;
}

/** A route to the servers: direct (oneWayDelayUs undefined) or through delay proxies. */
export interface RttLevel {
  name: string;
  oneWayDelayUs: number | undefined;
}

/** `select-1`: one `SELECT 1` at a time on one pooled connection; `redis-ping`: one PING. */
export type RttVariant = VariantId | 'select-1' | 'redis-ping';

export interface RttCell {
  level: string;
  variant: RttVariant;
  concurrency: number;
  runs: CellRun[];
}

export type RttResult =
  | { skipped: string }
  | { cells: RttCell[]; levels: RttLevel[]; proxyOverheadLevel: string };

/** The level that only prices the proxy: no delay, the bare transaction alone. */
const OVERHEAD_LEVEL: RttLevel = { name: 'proxy, no delay', oneWayDelayUs: 0 };

interface Route {
  level: RttLevel;
  db: Kysely<BenchDB>;
  redis: RedisConnection | undefined;
}

export async function runRtt(
  dbUrl: string,
  redisUrl: string | undefined,
  keyPrefix: string,
  settings: RttSettings,
  progress: (line: string) => void,
): Promise<RttResult> {
  const unavailable = delayProxyUnavailable();
  if (unavailable) return { skipped: `${unavailable}: the delay proxy cannot be built` };
  const binary = await buildDelayProxy();
  const proxies: DelayProxy[] = [];
  const routes: Route[] = [];
  const proxied = async (url: string, oneWayDelayUs: number) => {
    const target = new URL(url);
    const proxy = await startDelayProxy({
      targetHost: target.hostname,
      targetPort: Number(target.port || (url.startsWith('redis') ? 6379 : 5432)),
      oneWayDelayUs,
      binary,
    });
    proxies.push(proxy);
    target.hostname = proxy.host;
    target.port = String(proxy.port);
    return target.toString();
  };
  const openRoute = async (level: RttLevel, withRedis: boolean) => {
    const delay = level.oneWayDelayUs;
    const pgUrl = delay === undefined ? dbUrl : await proxied(dbUrl, delay);
    const redisRouteUrl =
      redisUrl && withRedis
        ? delay === undefined
          ? redisUrl
          : await proxied(redisUrl, delay)
        : undefined;
    // Kept open between cells: a reconnect through the proxy would be timed as work.
    const db = countingKysely(pgUrl, { idleTimeoutMillis: 0 });
    const redis = redisRouteUrl ? await connectRedis(redisRouteUrl) : undefined;
    const route = { level, db, redis };
    routes.push(route);
    return route;
  };

  try {
    const levels: RttLevel[] = [
      { name: 'direct', oneWayDelayUs: undefined },
      ...ONE_WAY_DELAYS_US.map((us) => ({ name: `+${(2 * us) / 1000} ms`, oneWayDelayUs: us })),
    ];
    for (const level of levels) await openRoute(level, true);
    const overhead = await openRoute(OVERHEAD_LEVEL, false);

    const replayKeys = await prepareReplayKeys(routes[0]?.db as Kysely<BenchDB>);
    const cells: RouteCell[] = [];
    for (const route of routes) {
      const { level, db, redis } = route;
      const powertools = redis && powertoolsCells(db, redis, keyPrefix);
      await powertools?.prepareReplayKeys();
      cells.push(...pingCells(route, settings.pings));
      for (const c of CONCURRENCIES) {
        const inLevel = (cell: Cell): RouteCell => ({ ...cell, level: level.name });
        cells.push(inLevel(bareCell(db, c)));
        if (route === overhead) continue;
        cells.push(
          inLevel(firstExecutionCell(db, c)),
          inLevel(firstExecutionCell(db, c, 'optimistic')),
          inLevel(replayCell(db, c, replayKeys)),
        );
        if (powertools) cells.push(inLevel(powertools.first(c)), inLevel(powertools.replay(c)));
      }
    }

    progress(`rtt warm-up: ${cells.length} cells x ${settings.warmupMs} ms`);
    for (const cell of cells) await cell.run(settings.warmupMs);
    const results = cells.map(
      ({ level, variant, concurrency }): RttCell => ({ level, variant, concurrency, runs: [] }),
    );
    for (let rep = 0; rep < settings.repetitions; rep++) {
      progress(
        `rtt repetition ${rep + 1}/${settings.repetitions}: ${cells.length} cells x ${settings.cellMs} ms`,
      );
      for (let i = 0; i < cells.length; i++) {
        const index = (i + rep) % cells.length;
        const run = await (cells[index] as RouteCell).run(settings.cellMs);
        (results[index] as RttCell).runs.push(run);
      }
    }
    return { cells: results, levels, proxyOverheadLevel: OVERHEAD_LEVEL.name };
  } finally {
    for (const route of routes) {
      await route.db.destroy();
      await route.redis?.close();
    }
    await Promise.all(proxies.map((proxy) => proxy.stop()));
  }
}

interface RouteCell {
  level: string;
  variant: RttVariant;
  concurrency: number;
  run(durationMs: number): Promise<CellRun>;
}

/** Round trips with nothing to do, one at a time: a fixed count, whatever the duration. */
function pingCells(route: Route, pings: number): RouteCell[] {
  const { level, db, redis } = route;
  const cells: RouteCell[] = [
    {
      level: level.name,
      variant: 'select-1',
      concurrency: 1,
      run: () => runCount(1, pings, () => sql`select 1`.execute(db)),
    },
  ];
  if (redis) {
    cells.push({
      level: level.name,
      variant: 'redis-ping',
      concurrency: 1,
      run: () => runCount(1, pings, () => redis.client.ping()),
    });
  }
  return cells;
}
