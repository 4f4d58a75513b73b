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
// "Untranslatable character", "character not in repertoire": the database is not UTF-8 and cannot
// hold a scope or key. Postgres' message quotes the character's bytes: a piece of the key.
const UNSUPPORTED_ENCODING = new Set(['22P05', '22021']);

/**
 * Runs `work` against `db` without its plugins (a camel-case plugin would rename our columns),
 * turning a schema without the ledger's tables, or a database whose encoding cannot hold the
 * scope or key, into a {@link LedgerSchemaError} (with the core's messages, which quote no key).
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
    if (typeof code === 'string' && UNSUPPORTED_ENCODING.has(code)) {
      throw new LedgerSchemaError({
        schema,
        problem: 'unsupported',
        message:
          "The database's encoding cannot hold this scope or key: the ledger needs a UTF-8 database",
        cause: error,
      });
    }
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
