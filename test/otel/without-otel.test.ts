/**
 * The core's events need no OpenTelemetry: in a process where no @opentelemetry package can be
 * loaded, calls work and publish their events; only idempotency-ledger/otel needs the API.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { useLedgerFixture } from '../support/ledger-fixture.ts';

const run = promisify(execFile);
const fx = useLedgerFixture();

it('publishes events in a process without @opentelemetry/api', async () => {
  const child = fileURLToPath(new URL('./support/without-otel-child.ts', import.meta.url));
  const { stdout } = await run(process.execPath, [child, fx.url], { timeout: 30_000 });
  expect(JSON.parse(stdout)).toEqual({
    outcomes: ['executed', 'replayed'],
    replayed: [false, true],
    // The hook does refuse the API: the subpath that needs it cannot load.
    otelSubpath: 'ERR_MODULE_NOT_FOUND',
  });
});
