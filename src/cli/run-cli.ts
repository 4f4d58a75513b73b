import { COMMANDS } from './registry.ts';
import { EXIT_OK, EXIT_USAGE, usageError } from './shared/cli-error.ts';
import { DATABASE_URL } from './shared/database-url.ts';
import { type Command, type CommandContext, withRedaction } from './shared/define-command.ts';
import { BINARY, reportError } from './shared/report-error.ts';
import { packageVersion } from './shared/version.ts';

const HELP = new Set(['help', '--help', '-h']);
const VERSION = new Set(['--version', '-v']);

/**
 * Runs the command line `argv` (the arguments after the binary's name) and resolves to its exit
 * code: 0 done, 1 failed, 2 a usage or configuration error, 3 nothing to act on, 4 refused.
 * Never rejects.
 * The binary passes the process's environment, output and a signal that aborts on SIGINT/SIGTERM;
 * tests pass their own.
 *
 * @example
 * ```ts
 * const code = await runCli(['cleanup', '--batch-size', '500'], {
 *   env: process.env,
 *   stdout: (text) => process.stdout.write(text),
 *   stderr: (text) => process.stderr.write(text),
 *   signal: AbortSignal.timeout(60_000),
 * });
 * ```
 */
export async function runCli(argv: readonly string[], unredacted: CommandContext): Promise<number> {
  const context = withRedaction(unredacted);
  const [first, ...rest] = argv;
  try {
    if (first === undefined) {
      context.stderr(programUsage());
      return EXIT_USAGE;
    }
    if (HELP.has(first)) return help(rest, context);
    if (VERSION.has(first)) {
      if (rest.length > 0) throw usageError(`${first} takes no argument`);
      context.stdout(`${packageVersion()}\n`);
      return EXIT_OK;
    }
    const command = COMMANDS.find(({ name }) => name === first);
    if (command) return await command.run(rest, context);
    throw usageError(
      first.startsWith('-')
        ? `unknown option ${first}; a command comes first: ${BINARY} <command> [options]`
        : `unknown command ${JSON.stringify(first)} (commands: ${commandNames()})`,
    );
  } catch (error) {
    return reportError(undefined, error, context.stderr);
  }
}

/** `help`, `--help`, `-h`, optionally followed by a command's name (and a subcommand's). */
function help(rest: readonly string[], { stdout }: CommandContext): number {
  const [name, ...extra] = rest;
  if (name === undefined) {
    stdout(programUsage());
    return EXIT_OK;
  }
  let command = COMMANDS.find((candidate) => candidate.name === name);
  if (command === undefined) {
    throw usageError(`unknown command ${JSON.stringify(name)} (commands: ${commandNames()})`);
  }
  // `help operations list`: one word more per level of subcommands.
  for (const word of extra) {
    const group: Command = command;
    const found = group.subcommands?.find(
      (candidate) => candidate.name === `${group.name} ${word}`,
    );
    if (found === undefined) {
      throw usageError(
        group.subcommands
          ? `unknown command ${JSON.stringify(`${group.name} ${word}`)} (see ${BINARY} help ${group.name})`
          : `help takes one command, not ${extra.join(' ')}`,
      );
    }
    command = found;
  }
  stdout(command.usage);
  return EXIT_OK;
}

function commandNames(): string {
  return COMMANDS.map(({ name }) => name).join(', ');
}

function programUsage(): string {
  const width = Math.max(...COMMANDS.map(({ name }) => name.length)) + 3;
  const commands = COMMANDS.map(({ name, summary }) => `  ${name.padEnd(width)}${summary}`);
  return `Usage: ${BINARY} <command> [options]

Commands:
${commands.join('\n')}

Options:
  -h, --help       this help; ${BINARY} <command> --help describes a command
  -v, --version    print the version

Environment:
  ${DATABASE_URL}     the connection string, e.g. postgres://user:password@host:5432/db
                   (percent-encode special characters in the password: @ as %40)

Exit codes: 0 done, 1 failed (the database could not be reached or raised an error),
            2 wrong arguments or ${DATABASE_URL}, 3 nothing to act on (release, operations
            release), 4 refused, nothing changed (release).
            SIGINT/SIGTERM: see each command's --help.
`;
}
