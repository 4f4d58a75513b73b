/**
 * The events `migrate()` publishes on `node:diagnostics_channel`: one per call, with the
 * migrations it applied. Nothing is published while no one subscribes.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import { traceRun } from './internal/trace-run.ts';

/**
 * The tracing channel of `migrate()` calls: `start`, `end`, `asyncStart`, `asyncEnd` and `error`,
 * with one {@link MigrateEvent} per call.
 */
export const MIGRATE_CHANNEL = 'idempotency-ledger:migrate';

/**
 * What a subscriber of {@link MIGRATE_CHANNEL} receives, read-only, complete by `asyncEnd`. A
 * public contract: while `version` is 1, fields are only added and `outcome` may gain values.
 */
export interface MigrateEvent {
  readonly version: 1;
  /** The schema (the validated option); undefined for invalid options. */
  readonly schema?: string;
  /**
   * `'applied'`: this call applied migrations (`applied` names them); `'up_to_date'`: none was
   * pending (another process may have applied them while this one waited for the lock);
   * `'failed'`: nothing was changed (the `error` channel has why).
   */
  readonly outcome?: 'applied' | 'up_to_date' | 'failed';
  /** The files this call applied, in order. */
  readonly applied?: readonly string[];
  readonly durationMs?: number;
  readonly error?: unknown;
}

type MigrateProgress = { -readonly [K in keyof MigrateEvent]: MigrateEvent[K] };

const channel: TracingChannel<MigrateProgress, MigrateProgress> = tracingChannel(MIGRATE_CHANNEL);

/**
 * Runs one `migrate()` call, traced when anyone subscribes. `run` gets a function that names the
 * schema once the options are validated.
 */
export function traceMigrate<R extends { applied: string[] }>(
  run: (describe: (schema: string) => void) => Promise<R>,
): Promise<R> {
  if (!channel.hasSubscribers) return run(() => {});
  const event: MigrateProgress = { version: 1 };
  const describe = (schema: string) => {
    event.schema = schema;
  };
  return traceRun(channel, event, () => run(describe), {
    succeeded(result) {
      event.applied = result.applied;
      event.outcome = result.applied.length > 0 ? 'applied' : 'up_to_date';
    },
    failed() {
      event.outcome = 'failed';
    },
  });
}
