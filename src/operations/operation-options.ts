/**
 * Validation of runOperation's and resumeAbandonedOperations' options: parsed once, at the edge,
 * every problem an InvalidIdempotencyOptionsError that names the option, before anything is
 * written. Scope, schema and durations follow the rules withIdempotency applies to its own.
 */
import { z } from 'zod';
import {
  DEFAULT_SCHEMA,
  DEFAULT_TTL_MS,
  DEFAULT_WAIT_TIMEOUT_MS,
  InvalidIdempotencyKeyError,
  InvalidIdempotencyOptionsError,
  isResponseEncryption,
  type ResponseEncryption,
} from '../index.ts';

/** Default lease of an attempt: 30 s, renewed every 10 s while it runs. */
export const DEFAULT_LEASE_MS = 30_000;

// As withIdempotency: a ttl of at most ten years; timers and lock_timeout take an int32 of ms.
const MAX_TTL_MS = 10 * 365 * DEFAULT_TTL_MS;
const MAX_TIMEOUT_MS = 2_147_483_647;

const scopeSchema = z
  .string()
  .min(1)
  .max(255)
  .refine((scope) => !scope.includes('\0'), 'must not contain NUL')
  // A lone surrogate has no UTF-8 form: pg would send U+FFFD, and two scopes would become one.
  .refine((scope) => scope.isWellFormed(), 'must be well-formed Unicode (no lone surrogates)');

const schemaNameSchema = z
  .string()
  .min(1)
  .refine((name) => !name.includes('\0'), 'must not contain NUL')
  .refine((name) => name.isWellFormed(), 'must be well-formed Unicode (no lone surrogates)')
  // Postgres cuts longer names short, silently: two long names would share one ledger.
  .refine(
    (name) => Buffer.byteLength(name, 'utf8') <= 63,
    'must be at most 63 bytes of UTF-8 (Postgres truncates longer names)',
  )
  // The functions find their tables through the search_path they were created with, which reads
  // "$user" as the current role's schema; "pg_" names are the system's.
  .refine((name) => name !== '$user', 'must not be "$user"')
  .refine((name) => !name.startsWith('pg_'), 'must not start with "pg_"');

// Built by responseEncryption(), by either build of the package: an object that merely has seal and
// open methods would store whatever its seal() returns, and replay whatever its open() returns.
const encryptionSchema = z
  .custom<ResponseEncryption>(isResponseEncryption, 'must be built by responseEncryption()')
  .optional();

const leaseMsSchema = z.int().min(100).max(MAX_TIMEOUT_MS);
const ttlMsSchema = z.int().positive().max(MAX_TTL_MS);

const runOptionsSchema = z.strictObject({
  scope: scopeSchema,
  key: z.unknown(),
  request: z.unknown(),
  leaseMs: leaseMsSchema.default(DEFAULT_LEASE_MS),
  ttlMs: ttlMsSchema.default(DEFAULT_TTL_MS),
  onConcurrent: z.enum(['wait', 'reject']).default('wait'),
  waitTimeoutMs: z.int().positive().max(MAX_TIMEOUT_MS).default(DEFAULT_WAIT_TIMEOUT_MS),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
  encryption: encryptionSchema,
});

const resumeOptionsSchema = z.strictObject({
  operations: z.array(z.unknown()).min(1),
  batchSize: z.int().min(1).max(10_000).default(10),
  leaseMs: leaseMsSchema.optional(),
  schema: schemaNameSchema.default(DEFAULT_SCHEMA),
  onError: z
    .custom<unknown>((value) => typeof value === 'function', 'must be a function')
    .optional(),
  signal: z.instanceof(AbortSignal, { message: 'must be an AbortSignal' }).optional(),
  encryption: encryptionSchema,
});

export type ParsedRunOptions = z.output<typeof runOptionsSchema> & { key: string };

/** runOperation's options, parsed; the key checked as withIdempotency checks it. */
export function parseRunOptions(options: unknown): ParsedRunOptions {
  const parsed = parseWith(runOptionsSchema, options, 'runOperation');
  const { key } = parsed;
  if (typeof key !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(key)) {
    throw new InvalidIdempotencyKeyError({
      message: 'The idempotency key must be 1 to 255 printable ASCII characters',
    });
  }
  return { ...parsed, key };
}

/** resumeAbandonedOperations' options, parsed (the operations themselves are the caller's). */
export function parseResumeOptions(
  options: unknown,
): Omit<z.output<typeof resumeOptionsSchema>, 'operations' | 'onError' | 'signal'> {
  const { batchSize, leaseMs, schema, encryption } = parseWith(
    resumeOptionsSchema,
    options,
    'resumeAbandonedOperations',
  );
  return {
    batchSize,
    schema,
    ...(leaseMs === undefined ? {} : { leaseMs }),
    ...(encryption === undefined ? {} : { encryption }),
  };
}

function parseWith<S extends z.ZodType>(schema: S, input: unknown, name: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues =
    typeof input === 'object' && input !== null
      ? result.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`)
      : ['(options): must be an object'];
  throw new InvalidIdempotencyOptionsError({
    message: `Invalid ${name} options: ${issues.join('; ')}`,
    issues,
    cause: result.error,
  });
}
