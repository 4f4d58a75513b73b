import { randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';

/**
 * Makes the first transaction that inserts a payment for `key` fail at COMMIT with a
 * serialization failure (40001), as SERIALIZABLE does when a concurrent transaction wins; later
 * attempts commit. A deferred constraint trigger raises it at COMMIT, so the failed attempt has
 * run its handler to the end and produced a whole response. A sequence counts the attempts,
 * because a sequence is not rolled back with the transaction.
 */
// biome-ignore lint/suspicious/noExplicitAny: any database with the fixture's payments table.
export async function failFirstCommitFor(db: Kysely<any>, key: string) {
  const suffix = randomBytes(6).toString('hex');
  const sequence = `forced_40001_${suffix}`;
  const trigger = `forced_40001_${suffix}`;
  await sql`create sequence ${sql.id(sequence)}`.execute(db);
  await sql`
    create or replace function force_40001_once() returns trigger language plpgsql as $$
    begin
      if nextval(tg_argv[0]) = 1 then
        raise exception 'forced serialization failure' using errcode = '40001';
      end if;
      return null;
    end $$`.execute(db);
  await sql`
    create constraint trigger ${sql.id(trigger)} after insert on payments
      deferrable initially deferred for each row when (new.key = ${sql.lit(key)})
      execute function force_40001_once(${sql.lit(sequence)})`.execute(db);
  return {
    /** Transactions that inserted the payment and reached COMMIT. */
    async attempts(): Promise<number> {
      const { rows } = await sql<{ attempts: string }>`
        select case when is_called then last_value else 0 end as attempts
          from ${sql.id(sequence)}`.execute(db);
      return Number(rows[0]?.attempts);
    },
    async remove(): Promise<void> {
      await sql`drop trigger ${sql.id(trigger)} on payments`.execute(db);
      await sql`drop sequence ${sql.id(sequence)}`.execute(db);
    },
  };
}
