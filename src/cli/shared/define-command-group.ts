import { EXIT_OK, EXIT_USAGE, usageError } from './cli-error.ts';
import type { Command } from './define-command.ts';
import { reportError } from './report-error.ts';

/** What a group of commands declares; see {@link defineCommandGroup}. */
export interface CommandGroupDefinition {
  /** The word that selects the group: `idempotency-ledger <name> <subcommand>`. */
  name: string;
  summary: string;
  /** What the group is for, shown above the list of its commands in its usage. */
  description: string;
  /** Its commands, each named `<name> <word>` (defined with `defineCommand`). */
  subcommands: readonly Command[];
}

const HELP = new Set(['help', '--help', '-h']);

/**
 * A command made of subcommands: `idempotency-ledger operations list` runs the command named
 * `operations list` with the arguments after it. `operations`, `operations --help` and
 * `operations help` print the list of its commands (to standard error, exit code 2, when no
 * subcommand was given); an unknown subcommand is a usage error that names the known ones.
 *
 * @example
 * ```ts
 * export const operationsCommand = defineCommandGroup({
 *   name: 'operations',
 *   summary: 'list, release and resume operations in progress',
 *   description: 'Operations of idempotency-ledger/operations.',
 *   subcommands: [operationsListCommand, operationsReleaseCommand],
 * });
 * ```
 */
export function defineCommandGroup(definition: CommandGroupDefinition): Command {
  const { name, summary, subcommands } = definition;
  const word = (command: Command) => command.name.slice(name.length + 1);
  for (const command of subcommands) {
    if (!command.name.startsWith(`${name} `)) {
      throw new Error(`the command ${command.name} is not named "${name} <word>"`);
    }
  }
  const width = Math.max(...subcommands.map((command) => word(command).length)) + 3;
  const usage = `Usage: idempotency-ledger ${name} <command> [options]

${definition.description}

Commands:
${subcommands.map((command) => `  ${word(command).padEnd(width)}${command.summary}`).join('\n')}

Run "idempotency-ledger ${name} <command> --help" for a command's options.
`;
  return {
    name,
    summary,
    usage,
    subcommands,
    async run(argv, context) {
      const [first, ...rest] = argv;
      if (first === undefined) {
        context.stderr(usage);
        return EXIT_USAGE;
      }
      try {
        if (HELP.has(first)) {
          // `operations --help`, or `operations help list` as `help operations list` reads.
          const [topic, ...extra] = rest;
          if (extra.length > 0) throw usageError(`help takes one command, not ${rest.join(' ')}`);
          context.stdout(topic === undefined ? usage : find(topic).usage);
          return EXIT_OK;
        }
        return await find(first).run(rest, context);
      } catch (error) {
        return reportError(name, error, context.stderr);
      }
    },
  };

  function find(given: string): Command {
    const command = subcommands.find((candidate) => word(candidate) === given);
    if (command) return command;
    const known = subcommands.map(word).join(', ');
    throw usageError(
      given.startsWith('-')
        ? `unknown option ${given}; a command comes first: ${name} <command> [options]`
        : `unknown command ${JSON.stringify(given)} (commands: ${known})`,
    );
  }
}
