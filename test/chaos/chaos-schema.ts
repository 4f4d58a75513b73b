/**
 * The chaos run's business data, next to the ledger: `effects`, one row per execution of fn that
 * committed, and `tallies`, counters fn bumps in the same transaction.
 */
import { type Kysely, sql } from 'kysely';
import { TALLY_BUCKETS } from './plan.ts';

// biome-ignore lint/suspicious/noExplicitAny: the chaos tables are only queried with raw SQL.
export type ChaosDb = Kysely<any>;

export async function createChaosSchema(db: ChaosDb): Promise<void> {
  // Deliberately no unique constraint on (scope, key): a second execution of the same key must be
  // able to commit, so that the checks can see it.
  await sql`
    create table effects (
      id bigserial primary key,
      scope text not null,
      key text not null,
      token text not null,
      client text not null,
      payload jsonb not null
    )`.execute(db);
  // A second business row per execution, and the one statement of fn that can wait on a lock
  // (other executions in the same bucket), which the tight lock_timeout then cuts short.
  await sql`
    create table tallies (
      bucket integer primary key,
      executions bigint not null default 0
    )`.execute(db);
  await sql`
    insert into tallies (bucket) select generate_series(0, ${TALLY_BUCKETS - 1})`.execute(db);
}
