import { cleanupCommand } from './commands/cleanup.ts';
import { migrateCommand } from './commands/migrate.ts';
import { operationsCommand } from './commands/operations.ts';
import type { Command } from './shared/define-command.ts';

/**
 * Every command of the binary, in the order `--help` lists them. A new command is one file in
 * `commands/` and one line here.
 */
export const COMMANDS: readonly Command[] = [migrateCommand, cleanupCommand, operationsCommand];
