/**
 * examples/messaging, run as its README runs it: the order service, two outbox relays and the
 * payments consumer against this machine's RabbitMQ, relays and consumers SIGKILLed throughout.
 * What it prints is what it counted in the database: every order charged exactly once.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { AMQP_URL } from './support/brokers.ts';
import { useTestDatabase } from './support/database.ts';

const run = promisify(execFile);
const database = useTestDatabase();

it('charges every order exactly once while relays and consumers are killed', async () => {
  const { stdout } = await run(process.execPath, ['examples/messaging/demo.ts'], {
    env: { ...process.env, DATABASE_URL: database.url, AMQP_URL },
    timeout: 150_000,
  });
  expect(stdout).toMatch(/orders placed +400 \(each retried once: 400 replays equal/);
  expect(stdout).toMatch(/messages consumed +400 distinct ids; 0 left unsent/);
  expect(stdout).toMatch(/charges +400\n/);
  expect(stdout).toMatch(/charged twice +0\n/);
  expect(stdout).toMatch(/never charged +0\n/);
  const kills = /processes killed +(\d+) relays, (\d+) payment consumers/.exec(stdout);
  expect(Number(kills?.[1])).toBeGreaterThan(0);
  expect(Number(kills?.[2])).toBeGreaterThan(0);
  expect(stdout).toContain('every order charged exactly once');
}, 180_000);
