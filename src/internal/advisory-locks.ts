/**
 * Advisory lock keys. The two-integer form keeps them apart from any bigint advisory locks the
 * application takes; the first integer names the purpose, the second the ledger's schema.
 *
 * The library takes them at transaction level only (`pg_advisory_xact_lock`,
 * `pg_try_advisory_xact_lock`): such a lock ends with its transaction, on the server connection
 * that ran it. A session-level lock taken through a transaction pooler (PgBouncer in transaction
 * mode) stays on a pooled server connection when the statement ends, and the unlock may run on
 * another one, so the lock leaks. Version 0.1 took the same keys at session level, so a 0.1
 * instance and a newer one still exclude each other during a rolling deploy.
 */
import { sql } from 'kysely';

/** `(classid, objid)` of the lock serialising concurrent migrate() calls on one schema. */
export function migrationLockKey(schema: string) {
  return sql`hashtext('idempotency-ledger:migrate'), hashtext(${schema})`;
}

/** `(classid, objid)` of the lock that lets one instance of a fleet run a cleanup batch. */
export function cleanupLockKey(schema: string) {
  return sql`hashtext('idempotency-ledger:cleanup'), hashtext(${schema})`;
}
