/**
 * The business tables of the payments the chaos run makes, and the audit that catches a write
 * committed by a fenced-off holder: at commit (a deferred constraint trigger), each business or
 * step row compares the fencing token it was written with against the operation's token as its
 * transaction then sees it. A holder whose write is fenced has the operation row locked with its
 * own token until it commits; a holder that was taken over sees the newer token, and its write
 * lands in `fencing_audit` - in its own transaction, so only writes that did commit are counted.
 */
import { type Kysely, sql } from 'kysely';

export async function createOpsChaosSchema(db: Kysely<unknown>, schema: string): Promise<void> {
  const operations = sql.id(schema, 'operations');
  await sql`
    create table orders (
      id bigserial primary key,
      scope text not null,
      key text not null,
      amount_cents integer not null,
      fencing_token bigint not null,
      pid integer not null
    );
    create table payments (
      id bigserial primary key,
      scope text not null,
      key text not null,
      order_id bigint not null,
      charge_id text not null,
      fencing_token bigint not null,
      pid integer not null
    );
    create table fencing_audit (
      written_in text not null,
      scope text not null,
      key text not null,
      written_token bigint not null,
      holder_token bigint
    );
    create function audit_fencing() returns trigger language plpgsql as $$
    declare
      holder bigint;
    begin
      select o.fencing_token into holder from ${operations} o
       where o.scope = new.scope and o.key = new.key;
      if holder is distinct from new.fencing_token then
        insert into fencing_audit values (tg_table_name, new.scope, new.key, new.fencing_token, holder);
      end if;
      return null;
    end $$;
    create constraint trigger orders_fencing after insert on orders
      deferrable initially deferred for each row execute function audit_fencing();
    create constraint trigger payments_fencing after insert on payments
      deferrable initially deferred for each row execute function audit_fencing();
    create constraint trigger steps_fencing after insert on ${sql.id(schema, 'operation_steps')}
      deferrable initially deferred for each row execute function audit_fencing();
  `.execute(db);
}
