/**
 * A failure's `error.type`: low in cardinality and free of the caller's data. A stable code when
 * the error has one (the library's errors, SQLSTATE on database errors, Node's system errors),
 * else the class name; never the message, which may carry what the caller's code put there.
 */
export function errorType(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && code.length > 0 ? code : error.name;
  }
  return '_OTHER';
}
