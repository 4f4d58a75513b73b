/**
 * The conformance kit (idempotency-ledger/conformance) run the way a user runs it, against every
 * example server: each as a child process over real sockets, on its own database, crash included.
 * The kit's own tests (that each check can fail) are in conformance-kit.test.ts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkIdempotencyContract, formatContractReport } from '../../src/conformance/index.ts';
import { startConformanceTarget } from './support/conformance-target.ts';

/** The frameworks with an example server, `examples/http/<framework>/server.ts`. */
const EXAMPLE_FRAMEWORKS: readonly string[] = ['express', 'fastify', 'hono', 'node-http'];

const examplesDirectory = fileURLToPath(new URL('../../examples/http/', import.meta.url));

describe('the idempotency contract of the example servers', () => {
  it('covers every example server there is, and only those', () => {
    const onDisk = readdirSync(examplesDirectory, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .filter((entry) => existsSync(`${examplesDirectory}${entry.name}/server.ts`))
      .map((entry) => entry.name);
    expect(onDisk.sort()).toEqual([...EXAMPLE_FRAMEWORKS].sort());
  });

  for (const framework of EXAMPLE_FRAMEWORKS) {
    it(`${framework}: keeps the contract, across a crash too, and exits 0 on SIGTERM`, async () => {
      const target = await startConformanceTarget(`${examplesDirectory}${framework}/server.ts`);
      const report = await checkIdempotencyContract(target.contractOptions());
      expect(report.passed, formatContractReport(report)).toBe(true);
      expect(
        report.checks.filter((check) => check.status === 'skipped'),
        formatContractReport(report),
      ).toEqual([]);
      expect(await target.server.stop(), target.server.output()).toBe(0);
    }, 120_000); // A start, the kit with a crash and a restart, and a stop, on a loaded machine.
  }
});
