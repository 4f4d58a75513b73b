/**
 * Checks shared by the outbox's entry points: every problem becomes an
 * {@link InvalidIdempotencyOptionsError} that names the option, before anything is written.
 */
import type { z } from 'zod';
import { InvalidIdempotencyOptionsError } from '../index.ts';

/** Default Postgres schema of the outbox tables: the ledger's. */
export const DEFAULT_OUTBOX_SCHEMA = 'idempotency';

/** Parses `input` with `schema`, turning zod's issues into an {@link InvalidIdempotencyOptionsError}. */
export function parseOutboxInput<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what: string,
): z.output<S> {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidIdempotencyOptionsError({
      message: `${what} must be an object`,
      issues: ['(input): must be an object'],
    });
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map(
    (issue) => `${issue.path.join('.') || '(input)'}: ${issue.message}`,
  );
  throw new InvalidIdempotencyOptionsError({
    message: `Invalid ${what}: ${issues.join('; ')}`,
    issues,
    cause: result.error,
  });
}
