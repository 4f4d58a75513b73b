import type { z } from 'zod';

/** A validation error as one line, `path: message; ...`, for a 400's message. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.join('.') || 'value'}: ${issue.message}`)
    .join('; ');
}
