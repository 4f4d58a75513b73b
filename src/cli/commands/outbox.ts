import { defineCommandGroup } from '../shared/define-command-group.ts';
import { outboxRelayCommand } from './outbox-relay.ts';
import { outboxReleaseCommand } from './outbox-release.ts';
import { outboxStatusCommand } from './outbox-status.ts';

/**
 * `idempotency-ledger outbox <status|relay|release>`: the transactional outbox of
 * `idempotency-ledger/outbox` from the command line.
 *
 * @example
 * ```ts
 * const code = await outboxCommand.run(['status', '--json'], context);
 * ```
 */
export const outboxCommand = defineCommandGroup({
  name: 'outbox',
  summary: 'the messages waiting in the outbox, and a relay that publishes them',
  description: `The transactional outbox of idempotency-ledger/outbox: the streams with messages
waiting, a relay that publishes them to RabbitMQ or NATS JetStream, and the release of a parked
message that blocks its stream.`,
  subcommands: [outboxStatusCommand, outboxRelayCommand, outboxReleaseCommand],
});
