export {
  WITH_IDEMPOTENCY_BATCH_CHANNEL,
  type WithIdempotencyBatchEvent,
} from './batch-events.ts';
export {
  type IdempotencyBatchItem,
  type IdempotencyBatchOptions,
  MAX_BATCH_ITEMS,
} from './batch-input.ts';
export {
  type CallOutcome,
  WITH_IDEMPOTENCY_CHANNEL,
  type WithIdempotencyEvent,
} from './call-events.ts';
export { NotJsonError } from './canonical-json.ts';
export {
  type CleanupOptions,
  type CleanupResult,
  cleanupExpired,
  DEFAULT_CLEANUP_BATCH_SIZE,
} from './cleanup.ts';
export {
  CLEANUP_CHANNEL,
  type CleanupEvent,
  type CleanupOutcome,
} from './cleanup-events.ts';
export {
  type ConflictReason,
  IdempotencyConflictError,
  IdempotencyError,
  type IdempotencyErrorCode,
  IdempotencyKeyReusedError,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  LedgerSchemaError,
  type LedgerSchemaProblem,
  ResponseDecryptionError,
  type ResponseDecryptionReason,
  type SealedKind,
  StoredResponseInvalidError,
  UnstorableResponseError,
  type UnstorableResponseReason,
} from './errors.ts';
export { fingerprintRequest } from './fingerprint.ts';
export type { Jsonified } from './jsonified.ts';
export {
  configureKeyPrivacy,
  hashIdempotencyKey,
  type KeyPrivacyOptions,
} from './key-privacy.ts';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  MIGRATIONS_DIRECTORY,
  type MigrateOptions,
  type MigrateResult,
  migrate,
} from './migrate.ts';
export { MIGRATE_CHANNEL, type MigrateEvent } from './migrate-events.ts';
export { type LedgerMigration, readMigrations } from './migration-files.ts';
export {
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_SCHEMA,
  DEFAULT_TTL_MS,
  DEFAULT_WAIT_TIMEOUT_MS,
  type IdempotencyOptions,
  type IsolationLevel,
  isValidIdempotencyKey,
  type ResponseSchema,
  validateIdempotencyOptions,
} from './options.ts';
export { handlePoolErrors, type PoolEvents } from './pool-errors.ts';
export {
  DEFAULT_REPLAY_CACHE_ENTRIES,
  ReplayCache,
  type ReplayCacheOptions,
} from './replay-cache.ts';
export {
  isResponseEncryption,
  ResponseEncryption,
  type ResponseEncryptionKey,
  type ResponseEncryptionOptions,
  responseEncryption,
  type SealBinding,
} from './response-encryption.ts';
export {
  type CleanupSchedule,
  type CleanupTick,
  DEFAULT_CLEANUP_INTERVAL_MS,
  DEFAULT_SCHEDULED_CLEANUP_PAUSE_MS,
  type ScheduleCleanupOptions,
  scheduleCleanup,
} from './schedule-cleanup.ts';
export { openStoredJson, sealStoredJson } from './seal-stored-json.ts';
export {
  type IdempotencyResult,
  type IdempotentTransaction,
  withIdempotency,
} from './with-idempotency.ts';
export { type BatchItemResult, withIdempotencyBatch } from './with-idempotency-batch.ts';
