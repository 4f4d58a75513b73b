/**
 * Model-based test: random sequences of calls (first executions, replays, reused keys, failing fn,
 * concurrent duplicates, calls inside the caller's transaction), expiries and cleanups, checked
 * step by step against a small in-memory model of the ledger and of the business table.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/canonical-json.ts';
import {
  cleanupExpired,
  IdempotencyKeyReusedError,
  type IdempotencyOptions,
  withIdempotency,
} from '../../src/index.ts';
import { countCheckedOutClients } from '../support/database.ts';
import { type LedgerFixture, useLedgerFixture } from '../support/ledger-fixture.ts';
import { emptyTables, runs, settle } from './support.ts';

const fx = useLedgerFixture();

// A few slots, so that sequences keep coming back to the same (scope, key).
const scopes = ['tenant-a', 'é🔑 tenant'];
const keys = ['k1', 'k2'];
// Requests 1 and 3 mean the same thing; undefined means "no request given".
const requests: unknown[] = [
  undefined,
  { amount: 1 },
  { amount: 2 },
  { note: undefined, amount: 1 },
];
const responses: unknown[] = [undefined, null, 0, 'text', { status: 201, body: { z: 1, a: [2] } }];

interface Entry {
  fingerprint: string | null;
  json: string | undefined;
  expired: boolean;
}

interface Model {
  entries: Map<string, Entry>;
  payments: Map<string, number>;
}

interface Slot {
  scope: string;
  key: string;
  id: string;
}

const slotArb: fc.Arbitrary<Slot> = fc
  .tuple(fc.constantFrom(...scopes), fc.constantFrom(...keys))
  .map(([scope, key]) => ({ scope, key, id: `${scope}|${key}` }));

const fingerprintOf = (request: unknown) => (request === undefined ? null : canonicalJson(request));

async function countRows(slot: Slot): Promise<{ payments: number; entries: number }> {
  return {
    payments: await fx.countPayments(slot.key, slot.scope),
    entries: await fx.countEntries(slot.key, slot.scope),
  };
}

/** What a call with this request must do, given the model: replay, refuse, or execute. */
function expectation(model: Model, slot: Slot, request: unknown) {
  const entry = model.entries.get(slot.id);
  if (!entry || entry.expired) return { kind: 'execute' as const };
  return entry.fingerprint === fingerprintOf(request)
    ? { kind: 'replay' as const, json: entry.json }
    : { kind: 'reused' as const };
}

function recordExecution(model: Model, slot: Slot, request: unknown, response: unknown): void {
  model.entries.set(slot.id, {
    fingerprint: fingerprintOf(request),
    json: JSON.stringify(response),
    expired: false,
  });
  model.payments.set(slot.id, (model.payments.get(slot.id) ?? 0) + 1);
}

async function checkSlot(model: Model, slot: Slot): Promise<void> {
  expect(await countRows(slot)).toEqual({
    payments: model.payments.get(slot.id) ?? 0,
    entries: model.entries.has(slot.id) ? 1 : 0,
  });
  expect(countCheckedOutClients(fx)).toBe(0);
}

/** One call of withIdempotency, on the pool or inside a transaction the test opens. */
class Call implements fc.AsyncCommand<Model, LedgerFixture> {
  readonly slot: Slot;
  readonly request: unknown;
  readonly response: unknown;
  readonly fails: boolean;
  readonly inCallerTransaction: boolean;

  constructor(
    slot: Slot,
    request: unknown,
    response: unknown,
    fails: boolean,
    inCallerTransaction: boolean,
  ) {
    this.slot = slot;
    this.request = request;
    this.response = response;
    this.fails = fails;
    this.inCallerTransaction = inCallerTransaction;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: LedgerFixture): Promise<void> {
    const { slot, request, response } = this;
    const failure = new Error('fn failed');
    let ran = 0;
    const options: IdempotencyOptions = { scope: slot.scope, key: slot.key, request };
    const fn = async (trx: typeof real.db) => {
      ran += 1;
      await trx
        .insertInto('payments')
        .values({ scope: slot.scope, key: slot.key, amount: 1 })
        .execute();
      if (this.fails) throw failure;
      return response;
    };
    const outcome = await settle(() =>
      this.inCallerTransaction
        ? real.db.transaction().execute((trx) => withIdempotency(trx, options, fn))
        : withIdempotency(real.db, options, fn),
    );

    const expected = expectation(model, slot, request);
    if (expected.kind === 'replay') {
      expect(outcome.ok && outcome.result.replayed).toBe(true);
      if (outcome.ok) expect(JSON.stringify(outcome.result.response)).toBe(expected.json);
      expect(ran).toBe(0);
    } else if (expected.kind === 'reused') {
      expect(outcome.ok ? outcome.result : outcome.error).toBeInstanceOf(IdempotencyKeyReusedError);
      expect(ran).toBe(0);
    } else if (this.fails) {
      expect(outcome).toEqual({ ok: false, error: failure });
      expect(ran).toBe(1);
    } else {
      expect(outcome).toEqual({ ok: true, result: { response, replayed: false } });
      expect(ran).toBe(1);
      recordExecution(model, slot, request, response);
    }
    await checkSlot(model, slot);
  }

  toString(): string {
    const where = this.inCallerTransaction ? 'in caller trx' : 'own trx';
    const what = this.fails ? 'fn throws' : `fn returns ${JSON.stringify(this.response)}`;
    return `call(${this.slot.id}, request ${JSON.stringify(this.request)}, ${what}, ${where})`;
  }
}

/** Two identical calls at once: one executes, the other waits for it and replays its response. */
class ConcurrentCalls implements fc.AsyncCommand<Model, LedgerFixture> {
  readonly slot: Slot;
  readonly request: unknown;
  readonly response: unknown;

  constructor(slot: Slot, request: unknown, response: unknown) {
    this.slot = slot;
    this.request = request;
    this.response = response;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: LedgerFixture): Promise<void> {
    const { slot, request, response } = this;
    let ran = 0;
    const call = () =>
      settle(() =>
        withIdempotency(real.db, { scope: slot.scope, key: slot.key, request }, async (trx) => {
          ran += 1;
          await trx
            .insertInto('payments')
            .values({ scope: slot.scope, key: slot.key, amount: 1 })
            .execute();
          return response;
        }),
      );
    const outcomes = await Promise.all([call(), call()]);

    const expected = expectation(model, slot, request);
    if (expected.kind === 'reused') {
      for (const outcome of outcomes) {
        expect(outcome.ok ? outcome.result : outcome.error).toBeInstanceOf(
          IdempotencyKeyReusedError,
        );
      }
      expect(ran).toBe(0);
    } else {
      const results = outcomes.map((outcome) => {
        if (!outcome.ok) throw outcome.error;
        return outcome.result;
      });
      const json = expected.kind === 'replay' ? expected.json : JSON.stringify(response);
      for (const result of results) expect(JSON.stringify(result.response)).toBe(json);
      const executed = results.filter((result) => !result.replayed).length;
      expect(executed).toBe(expected.kind === 'execute' ? 1 : 0);
      expect(ran).toBe(executed);
      if (expected.kind === 'execute') recordExecution(model, slot, request, response);
    }
    await checkSlot(model, slot);
  }

  toString(): string {
    return `concurrent(${this.slot.id}, request ${JSON.stringify(this.request)}, returns ${JSON.stringify(this.response)})`;
  }
}

/** The entry's time to live runs out (set in the past directly, rather than waited for). */
class Expire implements fc.AsyncCommand<Model, LedgerFixture> {
  readonly slot: Slot;

  constructor(slot: Slot) {
    this.slot = slot;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: LedgerFixture): Promise<void> {
    await sql`
      update idempotency.ledger set expires_at = statement_timestamp() - interval '1 second'
       where scope = ${this.slot.scope} and key = ${this.slot.key}`.execute(real.db);
    const entry = model.entries.get(this.slot.id);
    if (entry) entry.expired = true;
    await checkSlot(model, this.slot);
  }

  toString(): string {
    return `expire(${this.slot.id})`;
  }
}

/** cleanupExpired deletes exactly the expired entries, and nothing else. */
class Cleanup implements fc.AsyncCommand<Model, LedgerFixture> {
  readonly batchSize: number;

  constructor(batchSize: number) {
    this.batchSize = batchSize;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: LedgerFixture): Promise<void> {
    const { deleted } = await cleanupExpired(real.db, { batchSize: this.batchSize });
    const expired = [...model.entries].filter(([, entry]) => entry.expired).map(([id]) => id);
    expect(deleted).toBe(expired.length);
    for (const id of expired) model.entries.delete(id);
    const { rows } = await sql<{ count: number }>`
      select count(*)::int as count from idempotency.ledger`.execute(real.db);
    expect(rows[0]?.count).toBe(model.entries.size);
  }

  toString(): string {
    return `cleanup(batchSize ${this.batchSize})`;
  }
}

const requestArb = fc.constantFrom(...requests);
const responseArb = fc.constantFrom(...responses);

const commands = [
  fc
    .tuple(slotArb, requestArb, responseArb, fc.boolean(), fc.boolean())
    .map(
      ([slot, request, response, fails, inTrx]) => new Call(slot, request, response, fails, inTrx),
    ),
  fc
    .tuple(slotArb, requestArb, responseArb)
    .map(([slot, request, response]) => new ConcurrentCalls(slot, request, response)),
  slotArb.map((slot) => new Expire(slot)),
  fc.integer({ min: 1, max: 3 }).map((batchSize) => new Cleanup(batchSize)),
];

describe('withIdempotency against a model (property-based)', () => {
  it('agrees with the model over random sequences of calls, expiries and cleanups', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.commands(commands, {
          maxCommands: 40,
          size: 'medium',
          // A failure prints a replayPath beside seed and path: pass it too to replay the run.
          ...(process.env.FC_REPLAY_PATH ? { replayPath: process.env.FC_REPLAY_PATH } : {}),
        }),
        async (sequence) => {
          await emptyTables(fx.db);
          const setup = () => ({
            model: { entries: new Map(), payments: new Map() } as Model,
            real: fx,
          });
          await fc.asyncModelRun(setup, sequence);
        },
      ),
      runs(100),
    );
  });
});
