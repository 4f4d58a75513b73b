/** A response as the kit received it: nothing decoded, nothing joined. */
export interface ContractResponse {
  status: number;
  /** Every value of each header, by lower-case name. */
  headers: Readonly<Record<string, readonly string[]>>;
  /** The body's bytes as they came over the wire. */
  body: Buffer;
}

/** How much of a body a failure's detail quotes. */
const QUOTED_BODY_BYTES = 200;

/** A header's values joined with `, ` (how HTTP reads a repeated header), or `undefined`. */
export function headerOf(response: ContractResponse, name: string): string | undefined {
  return response.headers[name.toLowerCase()]?.join(', ');
}

/** Status, content type and the start of the body, for a failure's detail. */
export function describeResponse(response: ContractResponse): string {
  const contentType = headerOf(response, 'content-type') ?? 'no content-type';
  return `${response.status} (${contentType}) ${quoteBody(response.body)}`;
}

function quoteBody(body: Buffer): string {
  if (body.length === 0) return 'with an empty body';
  const start = body.subarray(0, QUOTED_BODY_BYTES).toString('utf8');
  return `${JSON.stringify(start)}${body.length > QUOTED_BODY_BYTES ? `... (${body.length} bytes)` : ''}`;
}

/** The headers a replay must repeat: they tell the client what the body is and where it lives. */
const REPLAYED_HEADERS = ['content-type', 'location'] as const;

/**
 * How `replay` differs from `original` in what a client relies on (status, `Content-Type`,
 * `Location`, body bytes), or `undefined` when it does not.
 */
export function replayDifference(
  original: ContractResponse,
  replay: ContractResponse,
): string | undefined {
  if (replay.status !== original.status) {
    return `status ${replay.status} instead of ${original.status}`;
  }
  for (const name of REPLAYED_HEADERS) {
    const expected = headerOf(original, name);
    const actual = headerOf(replay, name);
    if (actual !== expected) {
      return `${name} ${JSON.stringify(actual ?? null)} instead of ${JSON.stringify(expected ?? null)}`;
    }
  }
  if (!replay.body.equals(original.body)) {
    const at = firstDifferentByte(original.body, replay.body);
    return (
      `a body that differs from byte ${at}: ${quoteBody(replay.body)} ` +
      `instead of ${quoteBody(original.body)}`
    );
  }
  return undefined;
}

function firstDifferentByte(a: Buffer, b: Buffer): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) if (a[i] !== b[i]) return i;
  return length;
}

/**
 * How `response` falls short of an RFC 9457 problem with `status`, or `undefined` when it is one:
 * the status, an `application/problem+json` content type, and a JSON object whose `status`
 * member, if any, agrees.
 */
export function problemDifference(response: ContractResponse, status: number): string | undefined {
  if (response.status !== status) return `status ${response.status} instead of ${status}`;
  const mediaType = headerOf(response, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/problem+json') {
    return `content-type ${JSON.stringify(mediaType ?? null)} instead of application/problem+json`;
  }
  let problem: unknown;
  try {
    problem = JSON.parse(response.body.toString('utf8'));
  } catch {
    return 'a body that is not JSON';
  }
  if (typeof problem !== 'object' || problem === null || Array.isArray(problem)) {
    return 'a body that is not a JSON object';
  }
  const member = (problem as { status?: unknown }).status;
  if (member !== undefined && member !== status) {
    return `a "status" member of ${JSON.stringify(member)} in a ${status} response`;
  }
  return undefined;
}

/**
 * The delay a `Retry-After` header asks for, in milliseconds (seconds or an HTTP date), or
 * `undefined` when the header is missing or unreadable.
 */
export function retryAfterMsOf(response: ContractResponse): number | undefined {
  const value = headerOf(response, 'retry-after')?.trim();
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Whether any of `keys` appears in the response's body or header values (any letter case). */
export function echoedKey(response: ContractResponse, keys: readonly string[]): boolean {
  const texts = [response.body.toString('utf8'), ...Object.values(response.headers).flat()].map(
    (text) => text.toLowerCase(),
  );
  return keys.some((key) => texts.some((text) => text.includes(key.toLowerCase())));
}
