/**
 * Runs test/support/consumer-child.ts until it reports the point it stops at, then SIGKILLs it:
 * a consumer that dies there, as in an OOM kill or a lost machine.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export type CrashPoint = 'in-handler' | 'before-ack';

export async function killConsumerAt(
  point: CrashPoint,
  args: { transport: 'amqplib' | 'nats'; databaseUrl: string; scope: string; source: string },
): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(new URL('./consumer-child.ts', import.meta.url)),
      args.transport,
      args.databaseUrl,
      args.scope,
      args.source,
      point,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = once(child, 'exit');
  const reported = once(child.stdout, 'data').then(([chunk]) => String(chunk));
  // A child that fails before its stop point exits instead of reporting: say so.
  const first = await Promise.race([reported, exited.then(([code]) => `exited with ${code}`)]);
  if (first.trim() !== point) throw new Error(`the consumer process ${first.trim()}, not ${point}`);
  child.kill('SIGKILL');
  await exited;
}
