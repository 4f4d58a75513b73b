/**
 * Runs test/support/relay-child.ts until the broker confirmed the message at `position` and the
 * child reported it, then SIGKILLs it: a relay that dies between the confirm and the delete.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export async function killRelayAfterConfirm(
  position: number,
  args: { transport: 'amqplib' | 'nats'; databaseUrl: string },
): Promise<void> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./relay-child.ts', import.meta.url)), args.transport, args.databaseUrl],
    {
      env: { ...process.env, OUTBOX_CRASH_AFTER_CONFIRM_POSITION: String(position) },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = once(child, 'exit');
  const reported = once(child.stdout, 'data').then(([chunk]) => String(chunk));
  // A child that fails before its stop point exits instead of reporting: say so.
  const first = await Promise.race([reported, exited.then(([code]) => `exited with ${code}`)]);
  if (first.trim() !== 'confirmed') {
    child.kill('SIGKILL');
    throw new Error(`the relay process ${first.trim()}, not confirmed`);
  }
  child.kill('SIGKILL');
  await exited;
}
