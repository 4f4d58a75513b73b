/**
 * Validation shared by every entry point: options are parsed once, at the edge, and every problem
 * becomes an {@link InvalidIdempotencyOptionsError} that names the option.
 */
import type { z } from 'zod';
import { InvalidIdempotencyOptionsError } from '../errors.ts';

/** Parses `input` with `schema`, turning zod's issues into an {@link InvalidIdempotencyOptionsError}. */
export function parseOptions<S extends z.ZodType>(
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
