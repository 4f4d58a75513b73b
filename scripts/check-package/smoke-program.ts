/** What the smoke program is told, as JSON in PACKAGE_CHECK. */
export interface SmokeConfig {
  /** Each specifier to load (`idempotency-ledger`, `idempotency-ledger/http`, ...) and the file,
   * relative to the package, that it must resolve to in this module system. */
  entries: Record<string, string>;
  packageName: string;
  databaseUrl: string;
  /** Ledger schema and business table of this run, so that runs can share one database. */
  ledgerSchema: string;
  table: string;
}

/**
 * The source of a plain JavaScript program that uses the installed package the way a user would:
 * `require()` in CommonJS, `import` in ESM. It loads every entry point and checks that it resolved
 * to the file for its module system, finds the shipped migrations, migrates a database, and runs a
 * first execution and a replay of `withIdempotency`. Any failure is an uncaught error.
 *
 * @example
 * ```ts
 * await writeFile(join(dir, 'smoke.cjs'), smokeProgram('commonjs'));
 * ```
 */
export function smokeProgram(type: 'module' | 'commonjs'): string {
  const header =
    type === 'module'
      ? `import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const load = (specifier) =>
  specifier.endsWith('.json') ? import(specifier, { with: { type: 'json' } }) : import(specifier);
const resolve = (specifier) => fileURLToPath(import.meta.resolve(specifier));
`
      : `'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const load = async (specifier) => require(specifier);
const resolve = (specifier) => require.resolve(specifier);
`;
  const footer =
    type === 'module'
      ? 'await main();\n'
      : 'main().catch((error) => {\n  console.error(error);\n  process.exitCode = 1;\n});\n';
  return `${header}
async function main() {
  const config = JSON.parse(process.env.PACKAGE_CHECK);
  const packageDir = fs.realpathSync(path.dirname(resolve(config.packageName + '/package.json')));
  for (const [specifier, file] of Object.entries(config.entries)) {
    assert.equal(fs.realpathSync(resolve(specifier)), path.join(packageDir, file), specifier + ' resolves to ' + file);
    const loaded = await load(specifier);
    assert.ok(Object.keys(loaded).length > 0, specifier + ' exports nothing');
  }
  const library = await load(config.packageName);
  const { Kysely, PostgresDialect, sql } = await load('kysely');
  const pgModule = await load('pg');
  const pg = pgModule.default ?? pgModule;

  const shipped = path.join(packageDir, 'migrations');
  const migrations = fs.readdirSync(shipped).filter((name) => name.endsWith('.sql'));
  assert.ok(migrations.length > 0, 'the package ships migrations/*.sql');
  if ('MIGRATIONS_DIRECTORY' in library) {
    assert.equal(fs.realpathSync(library.MIGRATIONS_DIRECTORY), shipped, 'MIGRATIONS_DIRECTORY is the shipped folder');
  }
  const migrate = () => library.migrate({ connectionString: config.databaseUrl, schema: config.ledgerSchema });
  assert.equal((await migrate()).applied.length, migrations.length, 'migrate() applies every shipped migration');
  assert.deepEqual((await migrate()).applied, [], 'a second migrate() finds nothing to do');

  const pool = library.handlePoolErrors(new pg.Pool({ connectionString: config.databaseUrl, max: 2 }));
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  try {
    await sql\`create table \${sql.id(config.table)} (id serial primary key, amount int not null)\`.execute(db);
    let executions = 0;
    const options = { scope: 'package-check', key: 'key-1', request: { amount: 42 }, schema: config.ledgerSchema };
    const createPayment = () =>
      library.withIdempotency(db, options, async (trx) => {
        executions += 1;
        const payment = await trx
          .insertInto(config.table)
          .values({ amount: 42 })
          .returning(['id', 'amount'])
          .executeTakeFirstOrThrow();
        return { status: 201, body: payment };
      });
    const first = await createPayment();
    assert.equal(first.replayed, false, 'the first call executes');
    assert.deepEqual(first.response, { status: 201, body: { id: 1, amount: 42 } });
    const replay = await createPayment();
    assert.equal(replay.replayed, true, 'the second call replays');
    assert.deepEqual(replay.response, first.response, 'the replay returns the stored response');
    assert.equal(executions, 1, 'fn ran once');
    const { rows } = await sql\`select count(*)::int as count from \${sql.id(config.table)}\`.execute(db);
    assert.equal(rows[0].count, 1, 'one payment row');
    await assert.rejects(
      library.withIdempotency(db, { ...options, key: '' }, async () => undefined),
      (error) => error instanceof library.IdempotencyError && error.status === 400,
      'a bad key is an IdempotencyError of this module system',
    );
  } finally {
    await db.destroy();
  }
  console.log(Object.keys(config.entries).join(', ') + ' loaded; migrated; first execution and replay');
}

${footer}`;
}
