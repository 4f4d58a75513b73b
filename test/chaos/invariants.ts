/**
 * The end-of-run checks: the database and what the clients were told must tell one story, in
 * which every key executed exactly once and every answer was that execution's response.
 */
import { sql } from 'kysely';
import { withIdempotency } from '../../src/index.ts';
import type { ChaosDb } from './chaos-schema.ts';
import { type KeySpec, keySpec, TALLY_BUCKETS } from './plan.ts';
import type { Operation } from './protocol.ts';
import type { Answer, CommitFault } from './run-tally.ts';

export interface Verdict {
  /** Business rows beyond one per key: executions that should never have committed. */
  duplicates: number;
  /** Answers a client received that differ from the response the ledger keeps for the key. */
  lostResponses: number;
  /** Keys that do not end with one committed entry that replays. */
  stuckKeys: number;
  keysChecked: number;
  answersCompared: number;
  ledgerRows: number;
  businessRows: number;
  /** For faults that struck an execution's COMMIT: how often that commit had gone through. */
  commitOutcomes: Map<string, { committed: number; rolledBack: number }>;
  /** One line per violation found; empty on a clean run. */
  violations: string[];
}

export interface RunRecord {
  keys: number;
  scopes: number;
  answers: Answer[];
  commitFaults: CommitFault[];
  unanswered: Operation[];
}

class FinalPassExecuted extends Error {}

export async function checkInvariants(db: ChaosDb, run: RunRecord): Promise<Verdict> {
  const violations: string[] = [];
  const specs = Array.from({ length: run.keys }, (_, k) => keySpec(k, run.scopes));
  const indexOf = new Map(specs.map((spec, k) => [id(spec), k]));
  const name = (k: number) => `${specs[k]?.scope}/${specs[k]?.key}`;

  const { rows: effects } = await sql<{ id: string; scope: string; key: string; token: string }>`
    select id::text as id, scope, key, token from effects order by effects.id`.execute(db);
  const { rows: ledger } = await sql<{ scope: string; key: string; response: string | null }>`
    select scope, key, response::text as response from idempotency.ledger`.execute(db);
  const rowsByKey = groupBy(effects, indexOf, (row) => `business row ${row.id}`, violations);
  const entryByKey = new Map<number, string | null>();
  for (const [k, entries] of groupBy(ledger, indexOf, () => 'ledger entry', violations)) {
    entryByKey.set(k, entries[0]?.response ?? null);
  }
  const answersByKey = new Map<number, Answer[]>();
  for (const answer of run.answers) {
    const list = answersByKey.get(answer.keyIndex) ?? [];
    list.push(answer);
    answersByKey.set(answer.keyIndex, list);
  }

  let duplicates = 0;
  let lostResponses = 0;
  const stuck = new Set<number>();
  for (let k = 0; k < run.keys; k++) {
    const rows = rowsByKey.get(k) ?? [];
    const stored = entryByKey.get(k);
    if (rows.length > 1) {
      duplicates += rows.length - 1;
      violations.push(
        `duplicate: ${name(k)} has ${rows.length} business rows (ids ${rows.map((r) => r.id).join(', ')})`,
      );
    }
    for (const answer of answersByKey.get(k) ?? []) {
      if (answer.response === stored) continue;
      lostResponses++;
      violations.push(
        `lost response: ${name(k)} answered ${answer.response}${answer.replayed ? ' (replayed)' : ''}, ledger keeps ${stored ?? 'nothing'}`,
      );
    }
    if (typeof stored !== 'string') {
      stuck.add(k);
      violations.push(`stuck: ${name(k)} has no committed ledger entry with a response`);
      if (rows.length > 0) {
        violations.push(`mismatch: ${name(k)} has business rows, no ledger entry`);
      }
      continue;
    }
    const { effectId, token } = JSON.parse(stored) as { effectId?: string; token?: string };
    if (!rows.some((row) => row.id === effectId && row.token === token)) {
      violations.push(
        `mismatch: ${name(k)}'s ledger entry refers to business row ${effectId}, which does not exist`,
      );
    }
  }
  await checkTallies(db, effects, indexOf, specs, violations);

  for (const key of await finalPass(db, specs, entryByKey)) {
    stuck.add(key.k);
    violations.push(`stuck: final pass on ${name(key.k)}: ${key.problem}`);
  }
  for (const op of run.unanswered) {
    stuck.add(op.keyIndex);
    violations.push(`stuck: operation ${op.id} on ${name(op.keyIndex)} never got an answer`);
  }

  return {
    duplicates,
    lostResponses,
    stuckKeys: stuck.size,
    keysChecked: run.keys,
    answersCompared: run.answers.length,
    ledgerRows: ledger.length,
    businessRows: effects.length,
    commitOutcomes: commitOutcomes(run.commitFaults, entryByKey),
    violations,
  };
}

/** `scope key` of a key spec or table row; NUL cannot occur in either. */
function id(row: { scope: string; key: string }): string {
  return `${row.scope}\0${row.key}`;
}

/** Rows by key index; rows for a key the run never used are violations of their own. */
function groupBy<R extends { scope: string; key: string }>(
  rows: R[],
  indexOf: Map<string, number>,
  what: (row: R) => string,
  violations: string[],
): Map<number, R[]> {
  const byKey = new Map<number, R[]>();
  for (const row of rows) {
    const k = indexOf.get(id(row));
    if (k === undefined) {
      violations.push(`mismatch: ${what(row)} for unknown key ${row.scope}/${row.key}`);
      continue;
    }
    const list = byKey.get(k) ?? [];
    list.push(row);
    byKey.set(k, list);
  }
  return byKey;
}

/** fn bumps a tally in the same transaction as its business row: each bucket must add up. */
async function checkTallies(
  db: ChaosDb,
  effects: { scope: string; key: string }[],
  indexOf: Map<string, number>,
  specs: KeySpec[],
  violations: string[],
): Promise<void> {
  const expected = new Array<number>(TALLY_BUCKETS).fill(0);
  for (const row of effects) {
    const k = indexOf.get(id(row));
    const bucket = k === undefined ? undefined : specs[k]?.bucket;
    if (bucket !== undefined) expected[bucket] = (expected[bucket] ?? 0) + 1;
  }
  const { rows } = await sql<{ bucket: number; executions: string }>`
    select bucket, executions::text as executions from tallies order by bucket`.execute(db);
  for (const row of rows) {
    if (Number(row.executions) !== expected[row.bucket]) {
      violations.push(
        `mismatch: tally ${row.bucket} counts ${row.executions} executions, business rows ${expected[row.bucket]}`,
      );
    }
  }
}

/**
 * Calls withIdempotency once more for every key, as a last client would: each must replay the
 * stored response, and fn must not run. Returns the keys where that did not happen.
 */
async function finalPass(db: ChaosDb, specs: KeySpec[], entryByKey: Map<number, string | null>) {
  const problems: { k: number; problem: string }[] = [];
  let next = 0;
  const worker = async () => {
    for (let k = next++; k < specs.length; k = next++) {
      const spec = specs[k] as KeySpec;
      try {
        const { response, replayed } = await withIdempotency(
          db,
          { scope: spec.scope, key: spec.key, request: spec.request, waitTimeoutMs: 5_000 },
          async () => {
            throw new FinalPassExecuted();
          },
        );
        const text = JSON.stringify(response);
        if (!replayed || text !== entryByKey.get(k)) {
          problems.push({ k, problem: `got ${text} (replayed: ${replayed})` });
        }
      } catch (error) {
        const problem = error instanceof FinalPassExecuted ? 'fn ran: the key was free' : error;
        problems.push({ k, problem: String(problem) });
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return problems;
}

function commitOutcomes(faults: CommitFault[], entryByKey: Map<number, string | null>) {
  const outcomes = new Map<string, { committed: number; rolledBack: number }>();
  for (const { fault, keyIndex, token } of faults) {
    const label = fault.kind === 'kill' ? `kill:${fault.point}` : `cut:${fault.mode}`;
    const outcome = outcomes.get(label) ?? { committed: 0, rolledBack: 0 };
    const stored = entryByKey.get(keyIndex);
    const storedToken = stored ? (JSON.parse(stored) as { token?: string }).token : undefined;
    if (storedToken === token) outcome.committed++;
    else outcome.rolledBack++;
    outcomes.set(label, outcome);
  }
  return outcomes;
}
