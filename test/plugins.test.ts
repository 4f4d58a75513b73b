import { CamelCasePlugin, type Kysely, ParseJSONResultsPlugin, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupExpired, migrate, scheduleCleanup, withIdempotency } from '../src/index.ts';
import {
  createPayment,
  type Database,
  uniqueKey,
  useLedgerFixture,
} from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

/** Responses a JSON-parsing plugin would turn into something else, or choke on. */
const responses: [string, unknown][] = [
  ['an array', [42]],
  ['an object', { id: 1, nested: { b: 2, a: [1, '2'] } }],
  ['a string that looks like JSON', '{"not":"parsed"}'],
];

describe("the ledger ignores the caller's Kysely plugins", () => {
  let parsing: Kysely<Database>;
  beforeAll(() => {
    parsing = fx.db.withPlugin(new ParseJSONResultsPlugin());
  });

  it.each(responses)(
    'replays %s exactly as stored, under ParseJSONResultsPlugin',
    async (_label, value) => {
      const key = uniqueKey();
      const first = await withIdempotency(parsing, { scope: 's', key }, async (trx) => {
        await createPayment('s', key)(trx);
        return value;
      });
      const replay = await withIdempotency(parsing, { scope: 's', key }, async () => 'not again');
      expect(first).toEqual({ response: value, replayed: false });
      expect(JSON.stringify(replay.response)).toBe(JSON.stringify(value));
      expect(replay.replayed).toBe(true);

      // Inside the caller's transaction, where the claim statement itself returns the entry.
      const inside = await parsing
        .transaction()
        .execute((trx) => withIdempotency(trx, { scope: 's', key }, async () => 'not again'));
      expect(JSON.stringify(inside.response)).toBe(JSON.stringify(value));
      expect(await fx.countPayments(key)).toBe(1);
    },
  );

  describe('CamelCasePlugin and a camelCase ledger schema', () => {
    const schema = 'myLedger';
    let camel: Kysely<Database>;
    beforeAll(async () => {
      await migrate({ connectionString: fx.url, schema });
      camel = fx.db.withPlugin(new CamelCasePlugin());
    });
    afterAll(async () => {
      await sql`drop schema ${sql.id(schema)} cascade`.execute(fx.db);
    });

    it('executes, replays and cleans up in the schema it was given', async () => {
      const key = uniqueKey();
      const first = await withIdempotency(
        camel,
        { scope: 's', key, schema },
        createPayment('s', key),
      );
      const again = await camel
        .transaction()
        .execute((trx) =>
          withIdempotency(trx, { scope: 's', key, schema }, createPayment('s', key)),
        );
      expect(again).toEqual({ response: first.response, replayed: true });
      expect(await fx.countPayments(key)).toBe(1);

      await sql`update ${sql.id(schema, 'ledger')} set expires_at = now() - interval '1 second'`.execute(
        fx.db,
      );
      expect(await cleanupExpired(camel, { schema })).toEqual({ deleted: 1 });
    });

    it('runs scheduled cleanup ticks in that schema', async () => {
      const key = uniqueKey();
      await withIdempotency(camel, { scope: 's', key, schema, ttlMs: 1 }, createPayment('s', key));
      await sql`update ${sql.id(schema, 'ledger')} set expires_at = now() - interval '1 second'`.execute(
        fx.db,
      );
      const ticks: unknown[] = [];
      const errors: unknown[] = [];
      const ticked = Promise.withResolvers<void>();
      const schedule = scheduleCleanup(camel, {
        schema,
        onTick: (tick) => {
          ticks.push(tick);
          ticked.resolve();
        },
        onError: (error) => {
          errors.push(error);
          ticked.resolve();
        },
      });
      await ticked.promise;
      await schedule.stop();
      expect(errors).toEqual([]);
      expect(ticks).toEqual([{ ran: true, deleted: 1 }]);
    });
  });
});
