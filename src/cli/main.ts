#!/usr/bin/env node
/**
 * The `idempotency-ledger` binary: hands the process's arguments, environment, output and signals
 * to {@link runCli}, and exits with the code it returns. Run `idempotency-ledger --help`.
 */
import { runCli } from './run-cli.ts';
import { passwordsIn } from './shared/database-url.ts';
import { redact } from './shared/redact.ts';

const stopping = new AbortController();
// The first SIGINT or SIGTERM asks the command to stop (a cleanup finishes its running batch).
// Without a listener left, a second one ends the process at once, as Node does by default.
const stop = (signal: NodeJS.Signals) => {
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  stopping.abort(signal);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

runCli(process.argv.slice(2), {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  signal: stopping.signal,
  stderrIsTTY: process.stderr.isTTY === true,
}).then(
  (code) => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    // A command a signal stopped may have left work behind that cannot be cancelled (a migration
    // waiting for its lock); it must not keep the process alive. Closing the connection makes
    // Postgres roll back what that work had not committed.
    if (stopping.signal.aborted) process.exit(code);
    process.exitCode = code;
  },
  (error: unknown) => {
    // runCli() reports every error itself; this is a last resort, redacted like the rest.
    const message = redact(String(error), passwordsIn(process.env.DATABASE_URL));
    process.stderr.write(`idempotency-ledger: ${message}\n`);
    process.exitCode = 1;
  },
);
