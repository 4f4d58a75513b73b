// `npm run bench:designs [-- --quick]`: what would other ledger designs cost? Each design is the
// sequence of SQL statements a first execution would send, written out with raw pg (not the
// library), next to the bare business transaction and to what the library sends today. Designs
// interleaved round-robin, c=1 and c=16, medians; WAL per operation. It prices options for the
// library's design, so it lives beside the benchmark and is never part of `npm test`.
import { createHash, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { chargeResponse, newChargeRequest, SCOPE } from './business.ts';
import { openBenchDatabase } from './database.ts';
import { handlePoolErrors, migrate } from './library.ts';
import { median, runWorkers } from './measure.ts';
import { walBytesSince, walPosition } from './wal.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    // A regular expression: only the designs whose name matches (and the bare transaction) run.
    only: { type: 'string' },
    repetitions: { type: 'string' },
  },
});
const quick = args.quick === true || process.env.BENCH_QUICK === '1';
const repetitions = Number(args.repetitions ?? (quick ? 1 : 3));
const cellMs = quick ? 700 : 2000;
const TTL_MS = 86_400_000;
const WAIT_MS = 10_000;

const INSERT_CHARGE =
  'insert into charges (customer, amount, currency) values ($1, $2, $3) returning id';
const LOOKUP =
  'select fingerprint, response::text from idempotency.ledger where scope = $1 and key = $2 and expires_at > statement_timestamp()';
const CLAIM =
  'select claimed, fingerprint, response from idempotency.claim_key($1, $2, $3, $4, $5)';
const RECORD =
  "update idempotency.ledger set response = $1::json, expires_at = clock_timestamp() + $2 * interval '1 millisecond' where scope = $3 and key = $4";
// The record without touching the indexed expires_at: a HOT update (the TTL would then count
// from the claim, not from the record).
const RECORD_HOT =
  'update idempotency.ledger set response = $1::json where scope = $2 and key = $3';
// Claim with a transaction-level advisory lock on the key (no write), then one INSERT of the
// finished row: what the ledger's claim costs when it writes nothing. The read comes after the
// lock in a statement of its own, so that it sees what a transaction it waited for committed.
const CREATE_CLAIM_LOCK = `
  create function claim_with_lock(p_scope text, p_key text) returns text
  language plpgsql as $$
  begin
    perform pg_advisory_xact_lock(hashtextextended(p_key, hashtextextended(p_scope, 0)));
    return (select response::text from idempotency.ledger
             where scope = p_scope and key = p_key and expires_at > clock_timestamp());
  end $$`;
const CLAIM_LOCK = 'select claim_with_lock($1, $2)';
// The claim as one SQL statement, no plpgsql: it bounds its own wait with lock_timeout and puts
// the key in the in-flight list only when it inserted (RETURNING runs per inserted row), and
// restores lock_timeout after the insert. A conflict (no row) would go to claim_key.
const CLAIM_SQL = `
  with previous as materialized (select current_setting('lock_timeout') as lock_timeout),
       budget as materialized (
         select lock_timeout, set_config('lock_timeout', $5 || 'ms', true) from previous),
       claimed as (
         insert into idempotency.ledger (scope, key, fingerprint, expires_at)
         select $1, $2, $3, clock_timestamp() + $4 * interval '1 millisecond' from budget
         on conflict do nothing
         returning pg_current_xact_id()::text as xid,
                   set_config('idempotency_ledger.in_flight',
                     concat(current_setting('idempotency_ledger.in_flight', true), ' ', $6::text), true))
  select (select xid from claimed) as xid,
         set_config('lock_timeout', (select lock_timeout from previous), true)`;
const INSERT_ROW = `
  insert into idempotency.ledger as l (scope, key, fingerprint, response, expires_at)
  values ($1, $2, $3, $4::json, clock_timestamp() + $5 * interval '1 millisecond')
  on conflict (scope, key) do update
     set fingerprint = excluded.fingerprint, response = excluded.response,
         created_at = excluded.created_at, expires_at = excluded.expires_at
   where l.expires_at <= clock_timestamp()`;

// What record_entry() does, as one statement sent as text: the wait bounded by lock_timeout, set
// and restored in the statement, the guard against a transaction fn ended, and the check for an
// entry of the transaction's own. It costs more to plan on every call than it saves.
const INSERT_ROW_AS_ONE_STATEMENT = `
  with previous as materialized (
         select current_setting('lock_timeout') as lock_timeout,
                pg_current_xact_id_if_assigned() is not null as wrote),
       budget as materialized (
         select set_config('lock_timeout', $6::text, true) from previous where wrote or not $7::boolean),
       recorded as (
         insert into idempotency.ledger as l (scope, key, fingerprint, response, expires_at)
         select $1, $2, $3, $4::json, clock_timestamp() + $5 * interval '1 millisecond' from budget
         on conflict on constraint ledger_pkey do update
            set fingerprint = excluded.fingerprint, response = excluded.response,
                created_at = excluded.created_at, expires_at = excluded.expires_at
          where l.expires_at <= clock_timestamp()
         returning set_config('lock_timeout', (select lock_timeout from previous), true))
  select exists (select 1 from recorded) as recorded,
         (select wrote from previous) as "wroteBefore",
         exists (select 1 from idempotency.ledger where scope = $1 and key = $2
                    and xmin = pg_current_xact_id_if_assigned()::xid)
           and not exists (select 1 from recorded) as "ownEntry"`;

// The record as shipped: record_entry() of migration 00003, a plpgsql function whose plans are
// cached per session (the benchmark database is migrated by the library).
const RECORD_ENTRY = 'select idempotency.record_entry($1, $2, $3, $4::json, $5, $6, $7)';
// The plain INSERT with only the guard against a transaction fn ended.
const INSERT_ROW_GUARDED = `
  insert into idempotency.ledger as l (scope, key, fingerprint, response, expires_at)
  select $1, $2, $3, $4::json, clock_timestamp() + $5 * interval '1 millisecond'
   where pg_current_xact_id_if_assigned() is not null
  on conflict (scope, key) do update
     set fingerprint = excluded.fingerprint, response = excluded.response,
         created_at = excluded.created_at, expires_at = excluded.expires_at
   where l.expires_at <= clock_timestamp()`;

interface Design {
  name: string;
  /** A first execution (a fresh key; the default), or a replay of one of the finished keys. */
  kind?: 'first' | 'replay';
  /** Round trips of a first execution whose fn is one INSERT. */
  roundTrips: number;
  run(): Promise<void>;
}

const database = await openBenchDatabase();
const plain = handlePoolErrors(new pg.Pool({ connectionString: database.url, max: 16 }));
// pg's pipeline mode: queries issued without waiting go out back to back, each with its own Sync.
const piped = handlePoolErrors(
  new pg.Pool({ connectionString: database.url, max: 16, pipeline: true } as pg.PoolConfig),
);

/** Keys finished before the run, which the replay designs cycle through. */
const finishedKeys: string[] = [];
let nextReplay = 0;
function nextFinished(): string {
  nextReplay = (nextReplay + 1) % finishedKeys.length;
  return finishedKeys[nextReplay] as string;
}

/** One first execution: a fresh key, a charge, its 210-byte response. */
function operation() {
  const request = newChargeRequest();
  const fingerprint = createHash('sha256').update(JSON.stringify(request)).digest();
  return { request, key: randomUUID(), fingerprint };
}

async function transaction(
  pool: pg.Pool,
  body: (client: pg.PoolClient) => Promise<void>,
): Promise<void> {
  const client = await pool.connect();
  try {
    await body(client);
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

async function insertCharge(client: pg.PoolClient, op: Op) {
  const { request } = op;
  const { rows } = await client.query(INSERT_CHARGE, [
    request.customer,
    request.amount,
    request.currency,
  ]);
  return JSON.stringify(chargeResponse(rows[0].id, request));
}

/** Sends both statements back to back on a pipelined client; fails unless COMMIT committed. */
async function withCommit(client: pg.PoolClient, [text, values]: Statement) {
  const [, commit] = await Promise.all([client.query(text, values), client.query('commit')]);
  if (commit.command !== 'COMMIT') throw new Error('the transaction rolled back');
}

type Op = ReturnType<typeof operation>;
type Statement = [text: string, values: unknown[]];
const claim = (op: Op): Statement => [CLAIM, [SCOPE, op.key, op.fingerprint, TTL_MS, WAIT_MS]];
const record = (op: Op, response: string): Statement => [RECORD, [response, TTL_MS, SCOPE, op.key]];
const recordHot = (op: Op, response: string): Statement => [RECORD_HOT, [response, SCOPE, op.key]];
const insertRowAsOneStatement = (op: Op, response: string): Statement => [
  INSERT_ROW_AS_ONE_STATEMENT,
  [SCOPE, op.key, op.fingerprint, response, TTL_MS, `${WAIT_MS}ms`, true],
];
const recordEntry = (op: Op, response: string): Statement => [
  RECORD_ENTRY,
  [SCOPE, op.key, op.fingerprint, response, TTL_MS, WAIT_MS, true],
];
const insertRowGuarded = (op: Op, response: string): Statement => [
  INSERT_ROW_GUARDED,
  [SCOPE, op.key, op.fingerprint, response, TTL_MS],
];
const insertRow = (op: Op, response: string): Statement => [
  INSERT_ROW,
  [SCOPE, op.key, op.fingerprint, response, TTL_MS],
];

/** BEGIN, claim, fn, record, COMMIT, one statement at a time. */
function claimAndRecord(op: Op, recordWith: typeof record = record): Promise<void> {
  return transaction(plain, async (client) => {
    await client.query('begin');
    await client.query(...claim(op));
    const response = await insertCharge(client, op);
    await client.query(...recordWith(op, response));
    await client.query('commit');
  });
}

/** BEGIN, the claim as one SQL statement, fn, record, COMMIT, one statement at a time. */
function sqlClaimAndRecord(op: Op): Promise<void> {
  return transaction(plain, async (client) => {
    await client.query('begin');
    const { rows } = await client.query(CLAIM_SQL, [
      SCOPE,
      op.key,
      op.fingerprint,
      TTL_MS,
      WAIT_MS,
      op.key.slice(0, 32),
    ]);
    if (!rows[0]?.xid) throw new Error('a fresh key was not claimed');
    const response = await insertCharge(client, op);
    await client.query(...record(op, response));
    await client.query('commit');
  });
}

/** BEGIN, the advisory-lock claim, fn, one INSERT of the row, COMMIT, one statement at a time. */
function lockAndInsert(op: Op): Promise<void> {
  return transaction(plain, async (client) => {
    await client.query('begin');
    await client.query(CLAIM_LOCK, [SCOPE, op.key]);
    const response = await insertCharge(client, op);
    await client.query(...insertRow(op, response));
    await client.query('commit');
  });
}

/** BEGIN, fn, one INSERT of the finished row, COMMIT, one statement at a time. */
function insertLast(op: Op, insertWith: typeof insertRow = insertRow): Promise<void> {
  return transaction(plain, async (client) => {
    await client.query('begin');
    const response = await insertCharge(client, op);
    await client.query(...insertWith(op, response));
    await client.query('commit');
  });
}

/** `first` sent with BEGIN (if any), fn, then `last` sent with COMMIT: three round trips. */
function pipelined(
  op: Op,
  first: Statement | undefined,
  last: (op: Op, response: string) => Statement,
): Promise<void> {
  return transaction(piped, async (client) => {
    await Promise.all([client.query('begin'), first && client.query(...first)]);
    const response = await insertCharge(client, op);
    await withCommit(client, last(op, response));
  });
}

const allDesigns: Design[] = [
  {
    name: 'bare transaction (BEGIN; INSERT; COMMIT)',
    roundTrips: 3,
    run: () =>
      transaction(plain, async (client) => {
        await client.query('begin');
        await insertCharge(client, operation());
        await client.query('commit');
      }),
  },
  {
    name: 'shipped: lookup, BEGIN, claim, fn, record, COMMIT',
    roundTrips: 6,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await claimAndRecord(op);
    },
  },
  {
    name: 'lookup, BEGIN, claim as one SQL statement, fn, record, COMMIT',
    roundTrips: 6,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await sqlClaimAndRecord(op);
    },
  },
  {
    name: 'no lookup (a replay: BEGIN, claim, COMMIT)',
    roundTrips: 5,
    run: () => claimAndRecord(operation()),
  },
  {
    name: 'no lookup, HOT record (TTL from the claim)',
    roundTrips: 5,
    run: () => claimAndRecord(operation(), recordHot),
  },
  {
    name: 'no lookup, pipelined: BEGIN+claim, fn, record+COMMIT',
    roundTrips: 3,
    run: () => {
      const op = operation();
      return pipelined(op, claim(op), record);
    },
  },
  {
    name: 'lookup, BEGIN, advisory-lock claim, fn, one INSERT of the row, COMMIT',
    roundTrips: 6,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await lockAndInsert(op);
    },
  },
  {
    name: 'no lookup, BEGIN, advisory-lock claim, fn, one INSERT of the row, COMMIT',
    roundTrips: 5,
    run: () => lockAndInsert(operation()),
  },
  {
    name: 'no lookup, pipelined, advisory-lock claim, one INSERT of the row',
    roundTrips: 3,
    run: () => {
      const op = operation();
      return pipelined(op, [CLAIM_LOCK, [SCOPE, op.key]], insertRow);
    },
  },
  {
    name: 'record last: lookup, BEGIN, fn, one INSERT of the row, COMMIT',
    roundTrips: 5,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await insertLast(op);
    },
  },
  {
    name: 'record last as one statement with CTEs: lookup, BEGIN, fn, the INSERT statement, COMMIT',
    roundTrips: 5,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await insertLast(op, insertRowAsOneStatement);
    },
  },
  {
    name: "record last as shipped ('optimistic'): lookup, BEGIN, fn, record_entry(), COMMIT",
    roundTrips: 5,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await insertLast(op, recordEntry);
    },
  },
  {
    name: 'record last, guarded INSERT, no lock_timeout: lookup, BEGIN, fn, INSERT, COMMIT',
    roundTrips: 5,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await insertLast(op, insertRowGuarded);
    },
  },
  {
    name: 'record last, no lookup: BEGIN, fn, one INSERT of the row, COMMIT',
    roundTrips: 4,
    run: () => insertLast(operation()),
  },
  {
    name: 'record last: lookup, BEGIN, fn, one INSERT of the row with COMMIT (pipelined)',
    roundTrips: 4,
    run: async () => {
      const op = operation();
      await plain.query(LOOKUP, [SCOPE, op.key]);
      await pipelined(op, undefined, insertRow);
    },
  },
  {
    name: 'floor: no claim before fn, one INSERT of the row with COMMIT (not exactly-once per call)',
    roundTrips: 3,
    run: () => pipelined(operation(), undefined, insertRow),
  },
  {
    name: 'replay, shipped: the lookup, no transaction',
    kind: 'replay',
    roundTrips: 1,
    run: async () => {
      await plain.query(LOOKUP, [SCOPE, nextFinished()]);
    },
  },
  {
    name: 'replay without the lookup: BEGIN, claim (finds the entry), COMMIT',
    kind: 'replay',
    roundTrips: 3,
    run: () =>
      transaction(plain, async (client) => {
        await client.query('begin');
        await client.query(CLAIM, [SCOPE, nextFinished(), null, TTL_MS, WAIT_MS]);
        await client.query('commit');
      }),
  },
  {
    name: 'replay without the lookup, advisory-lock claim: BEGIN, lock + read, COMMIT',
    kind: 'replay',
    roundTrips: 3,
    run: () =>
      transaction(plain, async (client) => {
        await client.query('begin');
        await client.query(CLAIM_LOCK, [SCOPE, nextFinished()]);
        await client.query('commit');
      }),
  },
  {
    name: 'replay without the lookup, pipelined: BEGIN+claim, COMMIT',
    kind: 'replay',
    roundTrips: 2,
    run: () =>
      transaction(piped, async (client) => {
        const key = nextFinished();
        await Promise.all([
          client.query('begin'),
          client.query(CLAIM, [SCOPE, key, null, TTL_MS, WAIT_MS]),
        ]);
        await client.query('commit');
      }),
  },
];

const only = args.only === undefined ? undefined : new RegExp(args.only);
const designs = allDesigns.filter(
  (design, index) => index === 0 || only === undefined || only.test(design.name),
);

try {
  await migrate({ connectionString: database.url });
  await plain.query(CREATE_CLAIM_LOCK);
  for (let i = 0; i < 16; i++) {
    // Finished without a request (a NULL fingerprint), as the replay designs claim them.
    const op = { ...operation(), fingerprint: null as unknown as Op['fingerprint'] };
    await claimAndRecord(op);
    finishedKeys.push(op.key);
  }
  const { db } = database;
  const results = new Map<string, { opsPerSec: number[]; walBytesPerOp: number[] }>();
  const cells = [1, 16].flatMap((c) => designs.map((design) => ({ c, design })));
  for (const { c, design } of cells) await runWorkers(c, 200, () => design.run());
  for (let rep = 0; rep < repetitions; rep++) {
    console.error(`repetition ${rep + 1}/${repetitions}: ${cells.length} cells x ${cellMs} ms`);
    for (const { c, design } of cells) {
      const wal = await walPosition(db);
      const run = await runWorkers(c, cellMs, () => design.run());
      const walBytes = await walBytesSince(db, wal);
      const result = results.get(`${c} ${design.name}`) ?? { opsPerSec: [], walBytesPerOp: [] };
      result.opsPerSec.push(run.opsPerSec);
      result.walBytesPerOp.push(walBytes / (run.ops || 1));
      results.set(`${c} ${design.name}`, result);
    }
  }

  const cell = (c: number, design: Design) => results.get(`${c} ${design.name}`);
  const ops = (c: number, design: Design) => median(cell(c, design)?.opsPerSec ?? []);
  const bare = designs[0] as Design;
  const int = (n: number) => Math.round(n).toLocaleString('en-US');
  for (const kind of ['first', 'replay'] as const) {
    const title = kind === 'first' ? 'first execution' : 'replay of a finished key';
    console.log(
      `\n# Ledger designs, ${title} (${quick ? 'quick' : 'full'}; medians of ${repetitions})\n`,
    );
    console.log(
      '| design | round trips | c=1 ops/s | vs bare | c=16 ops/s | vs bare | WAL B/op |\n' +
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const design of designs) {
      if ((design.kind ?? 'first') !== kind && design !== bare) continue;
      const row = [1, 16].flatMap((c) => [
        int(ops(c, design)),
        `${(ops(c, design) / ops(c, bare)).toFixed(2)}x`,
      ]);
      const wal = int(median(cell(1, design)?.walBytesPerOp ?? []));
      console.log(`| ${design.name} | ${design.roundTrips} | ${row.join(' | ')} | ${wal} |`);
    }
  }
} finally {
  await Promise.all([plain.end(), piped.end()]);
  await database.close();
}
