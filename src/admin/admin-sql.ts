/**
 * What every admin statement shares: an executor without the caller's plugins, and the error a
 * schema without the ledger turns into.
 */
import type { Kysely } from 'kysely';
import { LedgerSchemaError } from '../index.ts';

// biome-ignore lint/suspicious/noExplicitAny: the statements are raw SQL; table types do not apply.
export type Executor = Kysely<any>;

// "Relation, function or schema does not exist": the schema was not migrated.
const MISSING = new Set(['42P01', '42883', '3F000']);

/**
 * Runs `work` against `db` without its plugins (a camel-case plugin would rename our columns),
 * turning a schema without the ledger's tables into a {@link LedgerSchemaError}.
 */
export async function runAdmin<R>(
  db: Kysely<unknown>,
  schema: string,
  work: (executor: Executor) => Promise<R>,
): Promise<R> {
  try {
    return await work((db as Executor).withoutPlugins());
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && MISSING.has(code)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'missing',
        message: `The idempotency ledger is missing from schema "${schema}", or not migrated to this version: run migrate() (or \`idempotency-ledger migrate\`) first`,
        cause: error,
      });
    }
    throw error;
  }
}
