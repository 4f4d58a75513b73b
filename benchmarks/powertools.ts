// The comparison: AWS Powertools idempotency with its Redis cache persistence layer, around the
// same business transaction. Its protocol is "SET NX an IN_PROGRESS record, run, SET COMPLETED";
// a replay is the failed SET NX followed by a GET.
import { randomUUID } from 'node:crypto';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import type { CacheClient } from '@aws-lambda-powertools/idempotency/cache/types';
import { createClient } from '@redis/client';
import type { Kysely } from 'kysely';
import { type BenchDB, type ChargeRequest, createCharge, newChargeRequest } from './business.ts';
import { counters, runWorkers } from './measure.ts';
import { type Cell, REPLAY_KEYS } from './variants.ts';

function newRedisClient(url: string) {
  return createClient({ url, socket: { connectTimeout: 2000, reconnectStrategy: false } });
}
type RedisClient = ReturnType<typeof newRedisClient>;

export interface RedisConnection {
  client: RedisClient;
  url: string;
  version: string;
  close(): Promise<void>;
}

interface ChargeEvent {
  key: string;
  body: ChargeRequest;
}

/** Connects to Redis, or returns undefined when nothing answers there (the variants are skipped). */
export async function connectRedis(url: string): Promise<RedisConnection | undefined> {
  const client = newRedisClient(url);
  client.on('error', () => undefined); // a refused connection is reported by connect() below
  try {
    await client.connect();
  } catch {
    client.destroy();
    return undefined;
  }
  const info = await client.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
  return { client, url, version, close: () => client.close() };
}

/** The client Powertools talks to: the Redis client itself, plus a count of commands sent. */
function countingClient(client: RedisClient): CacheClient {
  return {
    get: (name) => {
      counters.redisCommands++;
      return client.get(name);
    },
    set: (name, value, options) => {
      counters.redisCommands++;
      return client.set(
        name as string,
        value as string,
        options as Parameters<RedisClient['set']>[2],
      );
    },
    del: (keys) => {
      counters.redisCommands++;
      return client.del(keys);
    },
  };
}

export function powertoolsCells(db: Kysely<BenchDB>, redis: RedisConnection, keyPrefix: string) {
  // Set up as its documentation shows for a Redis client: the key is the event's `key`, default
  // expiry (1 h), no local cache (ours has none). No payload validation, unlike ours (which checks
  // a fingerprint of `request`): in 2.35 the cache layer drops the validation hash when it stores
  // the response, so every replay would fail (aws-powertools/powertools-lambda-typescript#5705).
  // That spares Powertools a hash per call, no round trip.
  const config = new IdempotencyConfig({ eventKeyJmesPath: 'key' });
  // Outside Lambda there is no remaining-time clock: Powertools would warn on every call and write
  // IN_PROGRESS records without an in-progress expiry. Give it one, as a Lambda invocation does.
  config.registerLambdaContext({ getRemainingTimeInMillis: () => 30_000 } as Parameters<
    IdempotencyConfig['registerLambdaContext']
  >[0]);
  const persistenceStore = new CachePersistenceLayer({ client: countingClient(redis.client) });
  let executions = 0;
  const handler = makeIdempotent(
    (event: ChargeEvent) => {
      executions++;
      return createCharge(db, event.body);
    },
    { persistenceStore, config, keyPrefix },
  );
  let replayEvents: ChargeEvent[] = [];

  return {
    async prepareReplayKeys(): Promise<void> {
      replayEvents = Array.from({ length: REPLAY_KEYS }, () => ({
        key: randomUUID(),
        body: newChargeRequest(),
      }));
      for (const event of replayEvents) await handler(event);
    },
    first(concurrency: number): Cell {
      return {
        variant: 'powertools-first',
        concurrency,
        async run(durationMs) {
          const before = executions;
          const run = await runWorkers(concurrency, durationMs, () =>
            handler({ key: randomUUID(), body: newChargeRequest() }),
          );
          if (executions - before !== run.ops) throw new Error('Powertools replayed a fresh key');
          return run;
        },
      };
    },
    replay(concurrency: number): Cell {
      let next = 0;
      return {
        variant: 'powertools-replay',
        concurrency,
        async run(durationMs) {
          const before = executions;
          const run = await runWorkers(concurrency, durationMs, () =>
            handler(replayEvents[next++ % replayEvents.length] as ChargeEvent),
          );
          if (executions !== before) throw new Error('Powertools executed a completed key again');
          return run;
        },
      };
    },
  };
}

/** Deletes this run's keys (and nothing else: the Redis server may be shared). */
export async function removeRunKeys(redis: RedisConnection, keyPrefix: string): Promise<number> {
  let removed = 0;
  for await (const keys of redis.client.scanIterator({ MATCH: `${keyPrefix}#*`, COUNT: 1000 })) {
    if (keys.length > 0) removed += await redis.client.del(keys);
  }
  return removed;
}
