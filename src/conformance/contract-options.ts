import { z } from 'zod';
import { InvalidIdempotencyOptionsError } from '../index.ts';
import type { ContractCheckResult } from './contract-report.ts';

/** Methods an idempotency key makes sense on: the ones that are not idempotent by themselves. */
export type ContractMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Lets the kit crash your server with requests in flight and start it again, to prove that a
 * key executes once across a crash. Only for a server the kit may kill: a test's own process.
 */
export interface CrashControl {
  /** Kills the server abruptly (SIGKILL, not a graceful stop) and resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts the server again on the same database; resolves with its base URL once it listens. */
  restart(): Promise<string>;
}

/**
 * Where and how to call your idempotent endpoint; see {@link checkIdempotencyContract}.
 *
 * @example
 * ```ts
 * const options: IdempotencyContractOptions = {
 *   baseUrl: 'http://127.0.0.1:3000',
 *   path: '/payments',
 *   headers: { authorization: `Bearer ${token}` },
 *   body: (n) => ({ amount_cents: 100 + n, currency: 'EUR' }),
 * };
 * ```
 */
export interface IdempotencyContractOptions {
  /** The API's origin, and a path prefix if it has one: `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** The endpoint, appended to `baseUrl`: `/payments`. */
  path: string;
  /** Default `POST`. */
  method?: ContractMethod;
  /** Sent with every request, e.g. credentials. Must not contain `Idempotency-Key`. */
  headers?: Readonly<Record<string, string>>;
  /**
   * A valid JSON body for the endpoint; distinct `n` must give distinct bodies (the kit sends
   * `body(n + 1)` with a used key to see it refused). Sent as `application/json`.
   */
  body: (n: number) => unknown;
  /** The status of a successful request. Default: any 2xx. */
  successStatus?: number;
  /** The header that marks a replay (value `true`), or `false` if the API sends none. Default `Idempotent-Replayed`. */
  replayedHeader?: string | false;
  /**
   * How many business effects (rows written, charges made) a key produced: lets the kit require
   * exactly one. Without it, the kit judges by responses alone.
   *
   * @example
   * ```ts
   * countEffects: async (key) =>
   *   Number((await pool.query('select count(*) from payments where idempotency_key = $1', [key])).rows[0].count),
   * ```
   */
  countEffects?: (key: string) => Promise<number>;
  /** Lets the kit kill the server mid-request and restart it; without it, that check is skipped. */
  crash?: CrashControl;
  /** Duplicates sent at once, and requests in flight when the server is killed. Default 8. */
  concurrency?: number;
  /** Longest time one check may take, server restart included. Default 30 000 ms. */
  checkTimeoutMs?: number;
  /** Called as each check finishes, e.g. to print progress. */
  onCheck?: (result: ContractCheckResult) => void;
}

/** {@link IdempotencyContractOptions} with defaults filled in. */
export interface ResolvedContractOptions {
  baseUrl: string;
  path: string;
  method: ContractMethod;
  headers: Readonly<Record<string, string>>;
  body: (n: number) => unknown;
  successStatus: number | undefined;
  replayedHeader: string | false;
  countEffects: ((key: string) => Promise<number>) | undefined;
  crash: CrashControl | undefined;
  concurrency: number;
  checkTimeoutMs: number;
  onCheck: (result: ContractCheckResult) => void;
}

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name');
const aFunction = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', {
  error: 'must be a function',
});

const optionsSchema = z.looseObject({
  baseUrl: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  path: z.string().startsWith('/', 'must start with /'),
  method: z.enum(['POST', 'PUT', 'PATCH', 'DELETE']).optional(),
  headers: z
    .record(headerName, z.string())
    .refine((headers) => !Object.keys(headers).some((n) => n.toLowerCase() === 'idempotency-key'), {
      error: 'must not contain Idempotency-Key: the kit sends its own keys',
    })
    .optional(),
  body: aFunction,
  successStatus: z.int().min(200).max(299).optional(),
  replayedHeader: z.union([headerName, z.literal(false)]).optional(),
  countEffects: aFunction.optional(),
  crash: z.looseObject({ kill: aFunction, restart: aFunction }).optional(),
  concurrency: z.int().min(2).max(256).optional(),
  checkTimeoutMs: z.int().positive().optional(),
  onCheck: aFunction.optional(),
});

/**
 * Checks the options before any request is sent.
 *
 * @throws {InvalidIdempotencyOptionsError} naming each invalid option.
 */
export function resolveContractOptions(
  options: IdempotencyContractOptions,
): ResolvedContractOptions {
  const result = optionsSchema.safeParse(options);
  const issues = result.success
    ? bodyIssues(options.body)
    : result.error.issues.map(
        (issue) => `${issue.path.join('.') || '(options)'}: ${issue.message}`,
      );
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid checkIdempotencyContract options: ${issues.join('; ')}`,
      issues,
      cause: result.error,
    });
  }
  return {
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    path: options.path,
    method: options.method ?? 'POST',
    headers: options.headers ?? {},
    body: options.body,
    successStatus: options.successStatus,
    replayedHeader: options.replayedHeader ?? 'Idempotent-Replayed',
    countEffects: options.countEffects,
    crash: options.crash,
    concurrency: options.concurrency ?? 8,
    checkTimeoutMs: options.checkTimeoutMs ?? 30_000,
    onCheck: options.onCheck ?? (() => {}),
  };
}

/** The key-reuse check needs two different bodies; say so now rather than in a confusing failure. */
function bodyIssues(body: (n: number) => unknown): string[] {
  try {
    const [first, second] = [JSON.stringify(body(0)), JSON.stringify(body(1))];
    if (first === undefined) return ['body: body(0) is not a JSON value'];
    return first === second ? ['body: body(0) and body(1) must differ'] : [];
  } catch (error) {
    return [`body: body(0) or body(1) threw or is not JSON (${String(error)})`];
  }
}
