import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS_DIRECTORY } from './internal/migrations-directory.ts';

export { MIGRATIONS_DIRECTORY };

/** One SQL file of the ledger's schema, as {@link readMigrations} returns it. */
export interface LedgerMigration {
  /** Its number, from the file name: `1` for `00001-create-ledger.sql`. */
  index: number;
  /** The file name, e.g. `00001-create-ledger.sql`. */
  name: string;
  /** The file's SQL, several statements, with unqualified names (see the file's header). */
  sql: string;
  /** SHA-256 of the file, hex: what `migrate()` records, and compares on every later run. */
  checksum: string;
}

// `00001-create-ledger.sql`: a number, a dash, a name.
const FILE_NAME = /^(\d+)-.+\.sql$/;

/**
 * The SQL files this version of the library ships, in the order they apply, with their
 * checksums. For a migration tool of your own that wants the SQL rather than the files (see
 * "With another migration tool" in the README); `migrate()` applies the same list.
 *
 * @example
 * ```ts
 * // A Knex migration of your own that creates the ledger (Knex runs it in a transaction).
 * export async function up(knex: Knex) {
 *   const [first] = readMigrations(); // 00001-create-ledger.sql; later files get later migrations
 *   await knex.raw('CREATE SCHEMA IF NOT EXISTS idempotency; SET LOCAL search_path TO idempotency');
 *   await knex.raw(first!.sql);
 * }
 * ```
 */
export function readMigrations(): LedgerMigration[] {
  const migrations = readdirSync(MIGRATIONS_DIRECTORY)
    .filter((name) => name.endsWith('.sql'))
    .map((name) => {
      const match = FILE_NAME.exec(name);
      if (!match?.[1]) throw new Error(`Unexpected file in ${MIGRATIONS_DIRECTORY}: ${name}`);
      const bytes = readFileSync(join(MIGRATIONS_DIRECTORY, name));
      return {
        index: Number.parseInt(match[1], 10),
        name,
        sql: bytes.toString('utf8'),
        checksum: createHash('sha256').update(bytes).digest('hex'),
      };
    })
    .sort((a, b) => a.index - b.index);
  // The package ships 1, 2, 3...: anything else is a broken installation, not a database problem.
  migrations.forEach((migration, position) => {
    if (migration.index !== position + 1) {
      throw new Error(
        `${MIGRATIONS_DIRECTORY} must hold migrations 1 to ${migrations.length}, one file each; found ${migration.name} at position ${position + 1}`,
      );
    }
  });
  return migrations;
}
