/**
 * Options of runOperation and resumeAbandonedOperations: a bad one is a typed error that names it,
 * raised before anything is written, and an unmigrated schema says to migrate.
 */
import { sql } from 'kysely';
import { expect, it } from 'vitest';
import { InvalidIdempotencyOptionsError, LedgerSchemaError } from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  type RunOperationOptions,
  resumeAbandonedOperations,
  runOperation,
} from '../../src/operations/index.ts';
import { type Database, uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';

const fx = useLedgerFixture();
const SCOPE = 'merchant:m7:options';
let ran = 0;
const operation = defineOperation({
  name: 'options',
  async run(op: OperationContext<Database>) {
    ran += 1;
    return op.finish(async () => 'done');
  },
});

const operationCount = async () => {
  const { rows } = await sql<{ count: number }>`
    select count(*)::int as count from idempotency.operations`.execute(fx.db);
  return rows[0]?.count;
};

const bad: [string, Partial<RunOperationOptions<unknown>>][] = [
  ['leaseMs', { leaseMs: 99 }],
  ['leaseMs', { leaseMs: 1.5e3 + 0.5 }],
  ['leaseMs', { leaseMs: Number.NaN }],
  ['leaseMs', { leaseMs: 2 ** 31 }],
  ['waitTimeoutMs', { waitTimeoutMs: 0 }],
  ['waitTimeoutMs', { waitTimeoutMs: 2 ** 31 }],
  ['ttlMs', { ttlMs: 0 }],
  ['ttlMs', { ttlMs: 11 * 365 * 24 * 60 * 60 * 1000 }],
  ['schema', { schema: '' }],
  // 64 bytes of UTF-8 in 32 characters: Postgres would cut the name short.
  ['schema', { schema: 'é'.repeat(32) }],
  ['schema', { schema: 'pg_catalog' }],
  ['schema', { schema: 'a\0b' }],
  ['schema', { schema: '$user' }],
  ['scope', { scope: '' }],
  ['scope', { scope: 'merchant\0' }],
  // A lone surrogate has no UTF-8 form: pg would send U+FFFD, and merge two scopes into one.
  ['scope', { scope: 'merchant:\ud800' }],
];

it.each(bad)(
  'refuses a bad %s with InvalidIdempotencyOptionsError, writing nothing',
  async (name, options) => {
    ran = 0;
    const before = await operationCount();
    const error = await runOperation(fx.db, operation, {
      scope: SCOPE,
      key: uniqueKey(),
      request: null,
      ...options,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
    expect((error as InvalidIdempotencyOptionsError).issues.join()).toContain(name);
    expect(await operationCount()).toBe(before);
    expect(ran).toBe(0);
  },
);

it('says the operations are missing from a schema that was never migrated', async () => {
  const error = await runOperation(fx.db, operation, {
    scope: SCOPE,
    key: uniqueKey(),
    request: null,
    schema: 'not_migrated',
  }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(LedgerSchemaError);
  expect(error).toMatchObject({ problem: 'missing', schema: 'not_migrated' });
});

it.each([
  ['batchSize', { batchSize: 0 }],
  ['batchSize', { batchSize: 1.5 }],
  ['leaseMs', { leaseMs: 5 }],
  ['schema', { schema: 'pg_catalog' }],
] as const)('refuses a bad completer %s before it resumes anything', async (name, options) => {
  const error = await resumeAbandonedOperations(fx.db, {
    operations: [operation],
    ...options,
  }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(InvalidIdempotencyOptionsError);
  expect((error as InvalidIdempotencyOptionsError).issues.join()).toContain(name);
});
