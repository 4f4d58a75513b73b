import type { Kysely } from 'kysely';
import { InvalidIdempotencyOptionsError } from '../errors.ts';

/**
 * Refuses anything but a Kysely instance or transaction as `db`, with an error that says so, before
 * anything is sent: a raw `pg.Pool` or client passed by mistake would otherwise fail deep inside
 * with a TypeError. Checked by shape, not `instanceof`, so that two copies of kysely in one
 * dependency tree still work together.
 */
export function assertKysely(db: unknown, functionName: string): asserts db is Kysely<unknown> {
  const candidate = db as Partial<
    Record<'transaction' | 'withoutPlugins' | 'isTransaction', unknown>
  >;
  if (
    typeof db === 'object' &&
    db !== null &&
    typeof candidate.withoutPlugins === 'function' &&
    typeof candidate.isTransaction === 'boolean' &&
    (candidate.isTransaction || typeof candidate.transaction === 'function')
  ) {
    return;
  }
  throw new InvalidIdempotencyOptionsError({
    message: `${functionName} needs a Kysely instance or a Kysely transaction as db (not a pg Pool or client)`,
    issues: ['db: must be a Kysely instance or transaction'],
  });
}
