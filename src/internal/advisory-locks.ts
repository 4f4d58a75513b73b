/**
 * Advisory lock keys. The two-integer form keeps them apart from any bigint advisory locks the
 * application takes; the first integer names the purpose, the second the ledger's schema.
 */
import { sql } from 'kysely';

/** `(classid, objid)` of the lock serialising concurrent migrate() calls on one schema. */
export function migrationLockKey(schema: string) {
  return sql`hashtext('idempotency-ledger:migrate'), hashtext(${schema})`;
}

/** `(classid, objid)` of the lock that lets one instance of a fleet run a cleanup tick. */
export function cleanupLockKey(schema: string) {
  return sql`hashtext('idempotency-ledger:cleanup'), hashtext(${schema})`;
}
