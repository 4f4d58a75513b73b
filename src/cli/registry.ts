import { cleanupCommand } from './commands/cleanup.ts';
import { inspectCommand } from './commands/inspect.ts';
import { listCommand } from './commands/list.ts';
import { migrateCommand } from './commands/migrate.ts';
import { operationsCommand } from './commands/operations.ts';
import { outboxCommand } from './commands/outbox.ts';
import { releaseCommand } from './commands/release.ts';
import { statsCommand } from './commands/stats.ts';
import type { Command } from './shared/define-command.ts';

/**
 * Every command of the binary, in the order `--help` lists them. A new command is one file in
 * `commands/` and one line here.
 */
export const COMMANDS: readonly Command[] = [
  migrateCommand,
  cleanupCommand,
  inspectCommand,
  releaseCommand,
  listCommand,
  statsCommand,
  operationsCommand,
  outboxCommand,
];
