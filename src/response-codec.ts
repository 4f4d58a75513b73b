import {
  InvalidIdempotencyOptionsError,
  StoredResponseInvalidError,
  UnstorableResponseError,
} from './errors.ts';
import type { ResponseSchema } from './options.ts';

/** A response ready to store: its JSON text (null for `undefined`) and the value every call returns. */
export interface EncodedResponse {
  json: string | null;
  response: unknown;
}

interface CodecContext {
  scope: string;
  key: string;
  responseSchema?: ResponseSchema | undefined;
  maxResponseBytes: number;
}

type Parsed = { success: true; data: unknown } | { success: false; error: unknown };

/**
 * Turns `fn`'s return value into what is stored, and what the first call returns. The first call
 * returns the value decoded from the stored JSON, exactly as a replay does: a `Date` that would
 * come back as a string on replay (without `responseSchema`) does so on the first call too, so a
 * difference can never surface only on retry.
 *
 * @throws {UnstorableResponseError} when the value is not JSON, too large, or fails the schema.
 * @throws {InvalidIdempotencyOptionsError} when `responseSchema` is asynchronous.
 */
export function encodeResponse(value: unknown, context: CodecContext): EncodedResponse {
  const { scope, key, responseSchema, maxResponseBytes } = context;
  const unstorable = (
    reason: 'not_json' | 'too_large' | 'schema',
    message: string,
    cause?: unknown,
  ) => new UnstorableResponseError({ scope, key, reason, message, cause });
  if (responseSchema) {
    const result = parseWith(responseSchema, value);
    if (!result.success) {
      throw unstorable('schema', 'The response does not match responseSchema', result.error);
    }
  }
  // The value itself is stored, not the schema's output: decoding applies the schema (and any
  // transform in it) once, on the first call and on every replay alike.
  let json: string | null | undefined = null;
  // `undefined` (a function that returns nothing) is stored as SQL NULL and replays as undefined.
  if (value !== undefined) {
    try {
      json = JSON.stringify(value);
    } catch (error) {
      // BigInt, cycles and throwing toJSON() methods end up here.
      const reason = (error as Error).message;
      throw unstorable('not_json', `The response cannot be serialised as JSON: ${reason}`, error);
    }
    if (json === undefined) {
      throw unstorable('not_json', `The response is a ${typeof value}, which JSON cannot hold`);
    }
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > maxResponseBytes) {
      throw unstorable(
        'too_large',
        `The response is ${bytes} bytes of JSON; maxResponseBytes is ${maxResponseBytes}`,
      );
    }
  }
  const decoded = decode(json, responseSchema);
  if (!decoded.success) {
    throw unstorable(
      'schema',
      'responseSchema does not accept the JSON form of the response, so it could not be replayed ' +
        '(JSON turns a Date into a string: use z.coerce.date())',
      decoded.error,
    );
  }
  return { json, response: decoded.data };
}

/**
 * Decodes a stored response for a replay.
 *
 * @throws {StoredResponseInvalidError} when it no longer matches `responseSchema`.
 */
export function decodeResponse(
  json: string | null,
  context: Pick<CodecContext, 'scope' | 'key' | 'responseSchema'>,
): unknown {
  const decoded = decode(json, context.responseSchema);
  if (!decoded.success) {
    const { scope, key } = context;
    throw new StoredResponseInvalidError({ scope, key, cause: decoded.error });
  }
  return decoded.data;
}

function decode(json: string | null, responseSchema: ResponseSchema | undefined): Parsed {
  const value: unknown = json === null ? undefined : JSON.parse(json);
  return responseSchema ? parseWith(responseSchema, value) : { success: true, data: value };
}

/**
 * `safeParse`, which throws (rather than reporting an issue) when the schema has an async
 * refinement or transform: the response is parsed inside the transaction, synchronously.
 */
function parseWith(responseSchema: ResponseSchema, value: unknown): Parsed {
  try {
    return responseSchema.safeParse(value);
  } catch (error) {
    throw new InvalidIdempotencyOptionsError({
      message:
        'responseSchema must be synchronous: it has an async refinement or transform, ' +
        'or it threw while parsing',
      issues: ['responseSchema: must parse synchronously'],
      cause: error,
    });
  }
}
