import { EXIT_OK } from './cli-error.ts';
import { passwordsIn } from './database-url.ts';
import { type FlagSpec, type FlagValues, parseFlags } from './parse-flags.ts';
import { redact } from './redact.ts';
import { reportError } from './report-error.ts';

/** What a command runs with: the process's environment, output and stop signal, or a test's. */
export interface CommandContext {
  /** Environment variables; the commands read `DATABASE_URL`. */
  env: Readonly<Record<string, string | undefined>>;
  /** Writes to standard output. */
  stdout: (text: string) => void;
  /** Writes to standard error. */
  stderr: (text: string) => void;
  /** Aborts on SIGINT/SIGTERM: the command stops connecting, or stops after its running batch. */
  signal: AbortSignal;
  /** Whether standard error is a terminal: long work then shows a progress line there. */
  stderrIsTTY?: boolean;
}

/** A subcommand of the binary. */
export interface Command {
  /** The words that select it: `idempotency-ledger <name>` (`operations list` for a subcommand). */
  readonly name: string;
  /** One line for the list of commands in `--help`. */
  readonly summary: string;
  /** What `<name> --help` prints. */
  readonly usage: string;
  /** The commands under this one (`operations list`), for `help <name> <subcommand>`. */
  readonly subcommands?: readonly Command[];
  /** Runs the command with the arguments that follow its name; resolves to the exit code. */
  run(argv: readonly string[], context: CommandContext): Promise<number>;
}

/** What a command file declares; {@link defineCommand} adds the parsing and error reporting. */
export interface CommandDefinition<S extends FlagSpec> {
  name: string;
  summary: string;
  usage: string;
  flags: S;
  /**
   * Does the work, once the flags parse. Throws a {@link CliError} for anything the user must
   * fix; other errors are reported as failures (exit code 1).
   */
  run(flags: FlagValues<S>, context: CommandContext): Promise<number>;
}

/**
 * Turns a command file's definition into a {@link Command}: `--help` prints its usage, flags it
 * does not take are usage errors (exit code 2) before anything else happens, and every error
 * becomes one line and an exit code. The password of `DATABASE_URL` is blanked out of every
 * message, whichever error carried it.
 *
 * @example
 * ```ts
 * export const statsCommand = defineCommand({
 *   name: 'stats',
 *   summary: 'count the ledger entries',
 *   usage: 'Usage: idempotency-ledger stats [--schema NAME]\n',
 *   flags: CONNECTION_FLAGS,
 *   async run(flags, { env, stdout }) {
 *     // ...
 *     return EXIT_OK;
 *   },
 * });
 * ```
 */
export function defineCommand<S extends FlagSpec>(definition: CommandDefinition<S>): Command {
  const { name, summary, usage } = definition;
  return {
    name,
    summary,
    usage,
    async run(argv, context) {
      const redacted = withRedaction(context);
      try {
        const parsed = parseFlags(argv, definition.flags);
        if (parsed.help) {
          redacted.stdout(usage);
          return EXIT_OK;
        }
        return await definition.run(parsed.values, redacted);
      } catch (error) {
        return reportError(name, error, redacted.stderr);
      }
    },
  };
}

/**
 * The same context, with the password of its `DATABASE_URL` blanked out of what goes to standard
 * error, where messages of pg and Postgres land. Standard output carries only the command's own
 * results (counts, file names), which a password that happens to be a word or a number must not
 * garble.
 *
 * @example
 * ```ts
 * withRedaction({ ...context, env: { DATABASE_URL: 'postgres://u:pw@db/app' } }).stderr('pw'); // '***'
 * ```
 */
export function withRedaction(context: CommandContext): CommandContext {
  const secrets = passwordsIn(context.env.DATABASE_URL);
  return { ...context, stderr: (text) => context.stderr(redact(text, secrets)) };
}
