/**
 * Validation of the admin functions' options. The messages name the option, never its value: a
 * key is a secret of the caller, and an operator's typo in one must not land in a log.
 */
import { z } from 'zod';
import { DEFAULT_SCHEMA, InvalidIdempotencyOptionsError } from '../index.ts';

/** The most rows one listing returns. */
export const MAX_LIST_LIMIT = 1_000_000;

/** A scope or key as the ledger stores it: text Postgres accepts. */
const ledgerText = z
  .string()
  .min(1)
  .refine((value) => !value.includes('\0'), 'must not contain NUL')
  .refine((value) => value.isWellFormed(), 'must be well-formed Unicode');

// The core checks schema names more closely when it creates the ledger; here the name only has to
// reach Postgres, which answers "no such schema" for anything else.
const schemaName = z
  .string()
  .min(1)
  .refine((value) => !value.includes('\0'), 'must not contain NUL')
  .default(DEFAULT_SCHEMA);

export const keyRefSchema = z.strictObject({
  scope: ledgerText,
  key: ledgerText,
  schema: schemaName,
});

export const releaseOptionsSchema = keyRefSchema.extend({ force: z.boolean().default(false) });

const limit = z.int().min(1).max(MAX_LIST_LIMIT);

export const listEntriesOptionsSchema = z.strictObject({
  scopePrefix: z
    .string()
    .refine((value) => !value.includes('\0'), 'must not contain NUL')
    .refine((value) => value.isWellFormed(), 'must be well-formed Unicode')
    .default(''),
  state: z.enum(['all', 'live', 'expired']).default('all'),
  limit: limit.default(100),
  schema: schemaName,
});

export const listStuckOptionsSchema = z.strictObject({
  scopePrefix: listEntriesOptionsSchema.shape.scopePrefix,
  minAttempts: z.int().min(1).max(2_147_483_647).default(5),
  limit: limit.default(100),
  schema: schemaName,
});

export const statsOptionsSchema = z.strictObject({
  top: z.int().min(0).max(1000).default(10),
  estimate: z.boolean().default(false),
  onProgress: z.custom<(stage: string) => void>((value) => typeof value === 'function').optional(),
  schema: schemaName,
});

/** Parses `input`, turning zod's issues into an InvalidIdempotencyOptionsError naming each option. */
export function parseAdminOptions<S extends z.ZodType>(
  schema: S,
  input: unknown,
  functionName: string,
): z.output<S> {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidIdempotencyOptionsError({
      message: `${functionName} options must be an object`,
      issues: ['(options): must be an object'],
    });
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map(
    (issue) => `${issue.path.join('.') || '(options)'}: ${issue.message}`,
  );
  throw new InvalidIdempotencyOptionsError({
    message: `Invalid ${functionName} options: ${issues.join('; ')}`,
    issues,
    cause: result.error,
  });
}
