/**
 * The events migrate() publishes on node:diagnostics_channel: one per call, with the files it
 * applied, or that it found nothing to do, or that it failed and changed nothing.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  InvalidIdempotencyOptionsError,
  MIGRATE_CHANNEL,
  type MigrateEvent,
  migrate,
  readMigrations,
} from '../src/index.ts';
import { useTestDatabase } from './support/database.ts';

const database = useTestDatabase();
const channel = tracingChannel<MigrateEvent, MigrateEvent>(MIGRATE_CHANNEL);
let ended: MigrateEvent[] = [];
let errors = 0;
const subscribers = {
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd: (event: MigrateEvent) => ended.push(event),
  error: () => {
    errors += 1;
  },
};
beforeEach(() => {
  ended = [];
  errors = 0;
  channel.subscribe(subscribers);
});
afterEach(() => {
  channel.unsubscribe(subscribers);
});

it('tells the migrations a call applied, then that the schema is up to date', async () => {
  const { applied } = await migrate({ connectionString: database.url, schema: 'events_ledger' });
  const files = readMigrations().map((migration) => migration.name);
  expect(applied).toEqual(files);
  await migrate({ connectionString: database.url, schema: 'events_ledger' });
  expect(ended).toHaveLength(2);
  expect(ended[0]).toMatchObject({
    version: 1,
    schema: 'events_ledger',
    outcome: 'applied',
    applied: files,
  });
  expect(ended[0]?.durationMs).toBeGreaterThan(0);
  expect(ended[1]).toMatchObject({ outcome: 'up_to_date', applied: [] });
  expect(errors).toBe(0);
});

it('tells a failed call, and invalid options without the schema given', async () => {
  await expect(
    migrate({ connectionString: database.url, schema: 'pg_nope' }),
  ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
  expect(ended[0]).toMatchObject({ outcome: 'failed' });
  expect(ended[0]?.schema).toBeUndefined();

  const unreachable = new URL(database.url);
  unreachable.port = '1';
  await expect(
    migrate({ connectionString: unreachable.href, connectTimeoutMs: 2000 }),
  ).rejects.toThrow();
  expect(ended[1]).toMatchObject({ outcome: 'failed', schema: 'idempotency' });
  expect(errors).toBe(2);
});
