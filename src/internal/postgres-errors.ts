/**
 * SQLSTATE codes the library reacts to, and predicates over driver errors. Errors are matched by
 * code only, never by message text, so they survive server locales and versions.
 */

export const SERIALIZATION_FAILURE = '40001';
export const DEADLOCK_DETECTED = '40P01';
export const LOCK_NOT_AVAILABLE = '55P03';
export const UNDEFINED_TABLE = '42P01';
export const UNDEFINED_FUNCTION = '42883';
export const INVALID_SCHEMA_NAME = '3F000';
export const IN_FAILED_SQL_TRANSACTION = '25P02';
export const NO_ACTIVE_SQL_TRANSACTION = '25P01';
export const UNTRANSLATABLE_CHARACTER = '22P05';
export const CHARACTER_NOT_IN_REPERTOIRE = '22021';

/** The SQLSTATE of a `pg` error, or undefined for anything else. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = (error as { code: unknown }).code;
  return typeof code === 'string' && code.length === 5 ? code : undefined;
}

/** Errors after which the whole transaction can be run again and may succeed. */
export function isRetryableTransactionError(error: unknown): boolean {
  const state = sqlState(error);
  return state === SERIALIZATION_FAILURE || state === DEADLOCK_DETECTED;
}

/** The ledger's table or functions do not exist: `migrate()` has not been run for this schema. */
export function isMissingLedgerError(error: unknown): boolean {
  const state = sqlState(error);
  return state === UNDEFINED_TABLE || state === UNDEFINED_FUNCTION || state === INVALID_SCHEMA_NAME;
}

/** A value the database's encoding cannot represent: the database is not UTF-8. */
export function isUnsupportedEncodingError(error: unknown): boolean {
  const state = sqlState(error);
  return state === UNTRANSLATABLE_CHARACTER || state === CHARACTER_NOT_IN_REPERTOIRE;
}
