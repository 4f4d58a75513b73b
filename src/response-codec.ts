import { StoredResponseInvalidError, UnstorableResponseError } from './errors.ts';
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

/**
 * Turns `fn`'s return value into what is stored, and what the first call returns. The first call
 * returns the value decoded from the stored JSON, exactly as a replay does: a `Date` that would
 * come back as a string on replay (without `responseSchema`) does so on the first call too, so a
 * difference can never surface only on retry.
 *
 * @throws {UnstorableResponseError} when the value is not JSON, too large, or fails the schema.
 */
export function encodeResponse(value: unknown, context: CodecContext): EncodedResponse {
  const { scope, key, responseSchema, maxResponseBytes } = context;
  if (responseSchema) {
    const result = responseSchema.safeParse(value);
    if (!result.success) {
      throw new UnstorableResponseError(
        scope,
        key,
        'schema',
        'The response does not match responseSchema',
        result.error,
      );
    }
  }
  // The value itself is stored, not the schema's output: decoding applies the schema (and any
  // transform in it) once, on the first call and on every replay alike.
  const json = stringify(value, scope, key);
  if (json !== null) {
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > maxResponseBytes) {
      throw new UnstorableResponseError(
        scope,
        key,
        'too_large',
        `The response is ${bytes} bytes of JSON; maxResponseBytes is ${maxResponseBytes}`,
      );
    }
  }
  const decoded = decode(json, responseSchema);
  if (!decoded.success) {
    throw new UnstorableResponseError(
      scope,
      key,
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
    throw new StoredResponseInvalidError(context.scope, context.key, decoded.error);
  }
  return decoded.data;
}

function stringify(value: unknown, scope: string, key: string): string | null {
  // `undefined` (a function that returns nothing) is stored as SQL NULL and replays as undefined.
  if (value === undefined) return null;
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    // BigInt, cycles and throwing toJSON() methods end up here.
    throw new UnstorableResponseError(
      scope,
      key,
      'not_json',
      `The response cannot be serialised as JSON: ${(error as Error).message}`,
      error,
    );
  }
  if (json === undefined) {
    throw new UnstorableResponseError(
      scope,
      key,
      'not_json',
      `The response is a ${typeof value}, which JSON cannot hold`,
    );
  }
  return json;
}

function decode(
  json: string | null,
  responseSchema: ResponseSchema | undefined,
): { success: true; data: unknown } | { success: false; error: unknown } {
  const value: unknown = json === null ? undefined : JSON.parse(json);
  return responseSchema ? responseSchema.safeParse(value) : { success: true, data: value };
}
