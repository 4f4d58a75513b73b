import { defineCommandGroup } from '../shared/define-command-group.ts';
import { operationsListCommand } from './operations-list.ts';
import { operationsReleaseCommand } from './operations-release.ts';
import { operationsResumeCommand } from './operations-resume.ts';

/**
 * `idempotency-ledger operations <list|release|resume>`: operators' commands for
 * `idempotency-ledger/operations`.
 *
 * @example
 * ```ts
 * const code = await operationsCommand.run(['list', '--json'], context);
 * ```
 */
export const operationsCommand = defineCommandGroup({
  name: 'operations',
  summary: 'list, release and resume operations in progress (idempotency-ledger/operations)',
  description: `Operators' commands for the operations of idempotency-ledger/operations: the ones in
progress, their leases, and the completer that resumes abandoned ones.`,
  subcommands: [operationsListCommand, operationsReleaseCommand, operationsResumeCommand],
});
