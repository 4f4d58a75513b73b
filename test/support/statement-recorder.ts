/**
 * A Kysely instance on a pool of its own to a test database, that notes every statement pg sends
 * (one statement is one network round trip), for tests that pin the statements of a path.
 */
import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { newPool } from './database.ts';

export interface StatementRecorder<DB> {
  /** The recording instance; created before the file's tests run. */
  readonly db: Kysely<DB>;
  /** Runs `work` and returns the statements it sent, each cut to its first words, lower-cased. */
  record(work: () => Promise<unknown>): Promise<string[]>;
}

/**
 * @param words - How many leading words of each statement to keep: enough to tell them apart.
 *
 * @example
 * ```ts
 * const recorder = useStatementRecorder<Database>(fx, 3);
 * expect(await recorder.record(() => withIdempotency(recorder.db, options, fn))).toEqual([...]);
 * ```
 */
export function useStatementRecorder<DB>(
  database: { url: string },
  words: number,
): StatementRecorder<DB> {
  let db: Kysely<DB> | undefined;
  const statements: string[] = [];
  beforeAll(() => {
    const pool: pg.Pool = newPool(database.url, 4);
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text;
        statements.push(text.trim().split(/\s+/).slice(0, words).join(' ').toLowerCase());
        return query(...args);
      };
    });
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  });
  afterAll(async () => {
    await db?.destroy();
  });
  return {
    get db() {
      if (!db) throw new Error('the statement recorder is created before the tests run');
      return db;
    },
    async record(work) {
      statements.length = 0;
      await work();
      return [...statements];
    },
  };
}
