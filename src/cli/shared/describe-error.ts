/**
 * A one-line description of any error. Node reports a refused connection to a host with several
 * addresses as an AggregateError with an empty message; its parts say what happened.
 *
 * @example
 * ```ts
 * describeError(new AggregateError([new Error('connect ECONNREFUSED ::1:5432')], ''));
 * // 'connect ECONNREFUSED ::1:5432'
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof AggregateError && error.message === '') {
    return error.errors.map(describeError).join('; ') || 'AggregateError';
  }
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
