// Operations for the `operations` commands to find: abandoned ones (their charge call failed
// after their order step committed), held ones (acquired with a long lease), and module files
// that define the same operation the way an application would, for `operations resume`.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import type { ResponseEncryption } from '../../src/index.ts';
import {
  defineOperation,
  type OperationContext,
  OperationPendingError,
  runOperation,
} from '../../src/operations/index.ts';
import { type Database, useLedgerFixture } from '../support/ledger-fixture.ts';

export const SCOPE = 'shop:7:create-payment';
export const NAME = 'cli-payment';

/** The operations module of the source tree, as a module outside it imports it. */
export const OPERATIONS_MODULE = fileURLToPath(
  new URL('../../src/operations/index.ts', import.meta.url),
);
/** The core of the source tree, as a module outside it imports it. */
export const CORE_MODULE = fileURLToPath(new URL('../../src/index.ts', import.meta.url));

// The operation as a process that crashed on its charge left it: order step recorded, lease free.
const chargeFails = defineOperation({
  name: NAME,
  async run(op: OperationContext<Database>, request: { amount_cents: number }) {
    await op.step('create-order', async (trx) => {
      await trx
        .insertInto('payments')
        .values({ scope: op.scope, key: op.key, amount: request.amount_cents })
        .execute();
      return null;
    });
    await op.call('charge', async () => {
      throw new Error('provider unreachable');
    });
    return op.finish(async () => null);
  },
});

/**
 * The fixture of a test file of the `operations` commands: a migrated database whose operation
 * tables and payments start empty in each test, a directory for module files, and helpers.
 */
export function useOperationsFixture() {
  const fx = useLedgerFixture();
  const state = { dir: '' };
  beforeAll(async () => {
    state.dir = await mkdtemp(join(tmpdir(), 'idempotency-cli-operations-'));
  });
  afterAll(async () => {
    if (state.dir) await rm(state.dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await sql`truncate idempotency.operation_steps, idempotency.operations, payments`.execute(
      fx.db,
    );
  });
  return {
    fx,
    env: () => ({ DATABASE_URL: fx.url }),
    /** Runs the operation until its charge fails: in progress, order written, lease released. */
    async abandon(key: string, amount = 2500, encryption?: ResponseEncryption) {
      await expect(
        runOperation(fx.db, chargeFails, {
          scope: SCOPE,
          key,
          request: { amount_cents: amount },
          ...(encryption ? { encryption } : {}),
        }),
      ).rejects.toBeInstanceOf(OperationPendingError);
    },
    /** Takes the operation as an attempt that is still running would hold it. */
    async hold(key: string, leaseMs = 600_000) {
      const { rows } = await sql<{ outcome: string }>`
        select outcome from idempotency.acquire_operation(
          ${SCOPE}, ${key}, ${NAME}, null, null, ${leaseMs}, 1000, 86400000)`.execute(fx.db);
      expect(rows[0]?.outcome).toBe('acquired');
    },
    /** The operation's row, as the commands leave it. */
    async row(key: string) {
      const { rows } = await sql<{
        state: string;
        fencing_token: string;
        lease_expires_at: Date | null;
        response: unknown;
      }>`
        select state, fencing_token::text, lease_expires_at, response
          from idempotency.operations where scope = ${SCOPE} and key = ${key}`.execute(fx.db);
      return rows[0];
    },
    /** Writes a module file into the fixture's directory; returns its absolute path. */
    async writeModule(name: string, source: string) {
      const file = join(state.dir, name);
      await writeFile(file, source);
      return file;
    },
  };
}

/**
 * The application's module, in TypeScript with types Node strips: the same operation, whose
 * charge now succeeds.
 */
export const TYPESCRIPT_MODULE = `
import { defineOperation } from ${JSON.stringify(OPERATIONS_MODULE)};

interface PaymentRequest {
  amount_cents: number;
}

export const createPayment = defineOperation({
  name: ${JSON.stringify(NAME)},
  async run(op: any, request: PaymentRequest) {
    await op.step('create-order', async (trx: any) => {
      await trx
        .insertInto('payments')
        .values({ scope: op.scope, key: op.key, amount: request.amount_cents })
        .execute();
      return null;
    });
    const charge = await op.call('charge', async ({ downstreamKey }: { downstreamKey: string }) => ({
      chargeId: 'ch_' + downstreamKey.slice(0, 12),
    }));
    return op.finish(async () => ({ status: 201, chargeId: charge.chargeId as string }));
  },
});

export const notAnOperation = { name: 'looks-like-one', run: async () => null };
`;
