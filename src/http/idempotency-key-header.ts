import { IdempotencyKeyHeaderError } from './http-errors.ts';

/** The header's name, lower case as Node and the Fetch API report it. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';

// RFC 8941 sf-string: printable ASCII in double quotes; `"` and `\` only as `\"` and `\\`.
const SF_STRING_BODY = String.raw`"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"`;
const SF_STRING = new RegExp(`^${SF_STRING_BODY}$`);
// A string followed by a list separator: how a header sent twice reads once joined (`"a", "b"`).
const SF_LIST = new RegExp(`^${SF_STRING_BODY}[ \t]*,`);
// Optional whitespace around a field value (RFC 9110 OWS).
const OWS = /^[ \t]+|[ \t]+$/g;

/**
 * Reads the client's key from the `Idempotency-Key` header's values. Accepts the IETF draft's
 * form, an RFC 8941 string (`Idempotency-Key: "abc"`), and the bare value Stripe's clients send
 * (`Idempotency-Key: abc`), as the same key `abc`.
 *
 * Pass every value the header was sent with (Node's `req.headersDistinct`): a header sent twice
 * is refused rather than guessed at. A `"a", "b"` list, which is how a repeated header reads once
 * joined into one value (the Fetch API's `Headers.get()` joins them), is refused as well. A bare
 * value is taken whole, commas included, since a bare key may contain them: once joined, two bare
 * values cannot be told from one key, so pass the values separately where the framework can.
 *
 * A quoted key followed by RFC 8941 parameters (`"abc";v=1`) is refused as malformed: the draft
 * defines none, and dropping them silently would make requests that differ in them one key.
 *
 * @throws {IdempotencyKeyHeaderError} (400) when the header is missing, repeated or malformed.
 *
 * @example
 * ```ts
 * readIdempotencyKey('"8e03978e-40d5"'); // '8e03978e-40d5'
 * readIdempotencyKey('8e03978e-40d5'); // '8e03978e-40d5'
 * readIdempotencyKey(['a', 'b']); // throws: repeated
 * ```
 */
export function readIdempotencyKey(header: string | readonly string[] | null | undefined): string {
  const values = header === null || header === undefined ? [] : [header].flat();
  if (values.length === 0) {
    throw new IdempotencyKeyHeaderError({
      problem: 'missing',
      message: 'The Idempotency-Key header is required',
    });
  }
  if (values.length > 1) {
    throw new IdempotencyKeyHeaderError({
      problem: 'repeated',
      message: 'The Idempotency-Key header must be sent once',
    });
  }
  const value = (values[0] as string).replace(OWS, '');
  const key = value.startsWith('"') ? unquote(value) : value;
  // The printable-ASCII and length rules are the core's (withIdempotency checks the key again);
  // here they make a bad header a 400 before a database connection is taken.
  if (key === undefined || !/^[\x20-\x7e]{1,255}$/.test(key)) {
    throw new IdempotencyKeyHeaderError({
      problem: SF_LIST.test(value) ? 'repeated' : 'malformed',
      message:
        'The Idempotency-Key header must be 1 to 255 printable ASCII characters, ' +
        'bare or as a quoted string',
    });
  }
  return key;
}

function unquote(value: string): string | undefined {
  return SF_STRING.test(value) ? value.slice(1, -1).replace(/\\(["\\])/g, '$1') : undefined;
}
