// `idempotency-ledger outbox status` and `outbox relay`, in this process, against a real Postgres,
// RabbitMQ and NATS JetStream: the relay runs until its signal aborts, then stops gracefully.
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { enqueueMessage } from '../../src/outbox/index.ts';
import { AMQP_URL, NATS_URL, openAmqp, openNats, uniqueName } from '../support/brokers.ts';
import { uniqueKey, useLedgerFixture } from '../support/ledger-fixture.ts';
import { recordedQueue } from '../support/outbox-fixture.ts';
import { runInProcess, startBinary } from './support.ts';

const fx = useLedgerFixture();
const env = () => ({ DATABASE_URL: fx.url });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await sql`truncate idempotency.outbox, idempotency.outbox_leases`.execute(fx.db);
});

async function enqueueMany(stream: string, topic: string, count: number) {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const { messageId } = await fx.db
      .transaction()
      .execute((trx) => enqueueMessage(trx, { stream, topic, payload: { i } }));
    ids.push(messageId);
  }
  return ids;
}

describe('outbox status', () => {
  it('says so when nothing waits', async () => {
    expect(await runInProcess(['outbox', 'status'], env())).toEqual({
      code: 0,
      stdout: 'no messages waiting\n',
      stderr: '',
    });
  });

  it('lists the streams with messages waiting, as a table and as JSON', async () => {
    await enqueueMany('orders-1', 'orders', 3);
    await enqueueMany('orders 2', 'orders', 1);
    await sql`update idempotency.outbox set attempts = 2, last_error = 'Error: down'
               where stream = 'orders 2'`.execute(fx.db);
    const table = await runInProcess(['outbox', 'status'], env());
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]?.split(/ {2,}/)).toEqual([
      'STREAM',
      'PENDING',
      'OLDEST',
      'STATE',
      'ATTEMPTS',
      'RELAY',
      'LAST ERROR',
    ]);
    expect(lines.slice(1).map((line) => line.split(/ {2,}/))).toEqual(
      expect.arrayContaining([
        ['orders-1', '3', expect.stringMatching(/^\d+(ms|s)$/), 'pending', '0', '-', '-'],
        [
          '"orders 2"',
          '1',
          expect.stringMatching(/^\d+(ms|s)$/),
          'failing',
          '2',
          '-',
          '"Error: down"',
        ],
      ]),
    );
    const json = await runInProcess(['outbox', 'status', '--json'], env());
    expect(JSON.parse(json.stdout).streams).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ stream: 'orders-1', pending: 3, state: 'pending' }),
        expect.objectContaining({ stream: 'orders 2', pending: 1, state: 'failing' }),
      ]),
    );
  });
});

describe('outbox release', () => {
  it('unblocks a parked stream (exit 0), and says when nothing is parked (exit 3)', async () => {
    const stream = uniqueKey('stream');
    await enqueueMany(stream, 't', 1);
    await sql`update idempotency.outbox set parked_at = now(), attempts = 5
               where stream = ${stream}`.execute(fx.db);
    const argv = ['outbox', 'release', '--stream', stream];
    expect(await runInProcess(argv, env())).toEqual({
      code: 0,
      stdout: 'released: the next relay pass publishes it\n',
      stderr: '',
    });
    const status = JSON.parse((await runInProcess(['outbox', 'status', '--json'], env())).stdout);
    expect(status.streams).toEqual([
      expect.objectContaining({ stream, state: 'pending', headAttempts: 0 }),
    ]);
    const again = await runInProcess(argv, env());
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('no parked message on that stream');
    expect((await runInProcess(['outbox', 'release'], env())).code).toBe(2);
  });
});

describe('outbox relay', () => {
  it('refuses no broker, two brokers, and --exchange without RabbitMQ (exit code 2)', async () => {
    for (const [argv, message] of [
      [[], 'give one broker: --amqp-url or --nats-url'],
      [['--amqp-url', 'amqp://x', '--nats-url', 'nats://y'], 'give one broker'],
      [['--nats-url', 'nats://y', '--exchange', 'e'], '--exchange applies only with --amqp-url'],
    ] as const) {
      const run = await runInProcess(['outbox', 'relay', ...argv], env());
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(message);
    }
  });

  it('parks a message no queue takes after --max-attempts, and outbox release lets it through once a queue is bound', async () => {
    const stream = uniqueKey('stream');
    const topic = uniqueName('unbound');
    const [id] = await enqueueMany(stream, topic, 1);
    const relayArgv = [
      ...['outbox', 'relay', '--amqp-url', AMQP_URL, '--poll-interval-ms', '10'],
      ...['--max-attempts', '2', '--lease-ms', '5000', '--publish-timeout-ms', '2000'],
    ];
    const stop = new AbortController();
    const running = runInProcess(relayArgv, env(), stop.signal);
    await expect
      .poll(
        async () =>
          JSON.parse((await runInProcess(['outbox', 'status', '--json'], env())).stdout).streams,
        {
          timeout: 30_000,
          interval: 50,
          message: 'the message to be parked',
        },
      )
      .toEqual([expect.objectContaining({ stream, state: 'parked', headAttempts: 2 })]);
    stop.abort();
    const stopped = await running;
    expect(stopped).toMatchObject({ code: 0, stdout: 'stopped; published 0 messages\n' });
    expect(stopped.stderr).toContain('RabbitMQ returned the message (NO_ROUTE)');
    expect(stopped.stderr).not.toContain(String(id));

    const connection = await openAmqp();
    const channel = await connection.createChannel();
    await channel.assertQueue(topic);
    cleanups.push(async () => {
      await channel.deleteQueue(topic);
      await connection.close();
    });
    expect((await runInProcess(['outbox', 'release', '--stream', stream], env())).code).toBe(0);
    const again = new AbortController();
    const rerun = runInProcess(relayArgv, env(), again.signal);
    await expect
      .poll(async () => (await channel.checkQueue(topic)).messageCount, {
        message: 'the released message to be delivered',
      })
      .toBe(1);
    again.abort();
    expect(await rerun).toMatchObject({ code: 0, stdout: 'stopped; published 1 messages\n' });
  });

  it('leaves the relay options to createOutboxRelay: a publish timeout not shorter than the lease exits 2', async () => {
    const run = await runInProcess(
      [
        'outbox',
        'relay',
        '--amqp-url',
        AMQP_URL,
        '--lease-ms',
        '1000',
        '--publish-timeout-ms',
        '1000',
      ],
      env(),
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('publishTimeoutMs');
  });

  it('publishes to RabbitMQ until its signal aborts, then stops with exit code 0', async () => {
    const connection = await openAmqp();
    cleanups.push(() => connection.close());
    const { queue, delivered, waitFor, remove } = await recordedQueue(connection, 'cli');
    cleanups.push(remove);
    const ids = await enqueueMany(uniqueKey('stream'), queue, 5);
    const stop = new AbortController();
    const running = runInProcess(
      ['outbox', 'relay', '--amqp-url', AMQP_URL, '--poll-interval-ms', '10'],
      env(),
      stop.signal,
    );
    await waitFor(5);
    stop.abort();
    expect(await running).toEqual({
      code: 0,
      stdout: 'stopped; published 5 messages\n',
      stderr: '',
    });
    expect(delivered.map((message) => message.messageId)).toEqual(ids);
    expect(await runInProcess(['outbox', 'status'], env())).toMatchObject({
      stdout: 'no messages waiting\n',
    });
  });

  it('publishes to NATS JetStream until its signal aborts, then stops with exit code 0', async () => {
    const nc = await openNats();
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const stream = uniqueName('cli');
    await jsm.streams.add({ name: stream, subjects: [stream], duplicate_window: nanos(60_000) });
    cleanups.push(() => jsm.streams.delete(stream));
    await jsm.consumers.add(stream, { durable_name: 'worker', ack_policy: AckPolicy.None });
    const ids = await enqueueMany(uniqueKey('stream'), stream, 3);
    const stop = new AbortController();
    const running = runInProcess(
      ['outbox', 'relay', '--nats-url', NATS_URL, '--poll-interval-ms', '10'],
      env(),
      stop.signal,
    );
    await expect
      .poll(async () => (await jsm.streams.info(stream)).state.messages, {
        timeout: 15_000,
        message: 'three messages stored by JetStream',
      })
      .toBe(3);
    stop.abort();
    expect(await running).toEqual({
      code: 0,
      stdout: 'stopped; published 3 messages\n',
      stderr: '',
    });
    const consumer = await jetstream(nc).consumers.get(stream, 'worker');
    const received: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const message = await consumer.next({ expires: 5000 });
      received.push(message?.headers?.get('Nats-Msg-Id') ?? '');
    }
    expect(received).toEqual(ids);
  });

  it('runs as the real binary until SIGTERM, then exits 0 once the publishes are recorded', async () => {
    const connection = await openAmqp();
    cleanups.push(() => connection.close());
    const { queue, delivered, waitFor, remove } = await recordedQueue(connection, 'cli-bin');
    cleanups.push(remove);
    const ids = await enqueueMany(uniqueKey('stream'), queue, 4);
    const { child, exited } = startBinary(
      ['outbox', 'relay', '--amqp-url', AMQP_URL, '--poll-interval-ms', '20'],
      env(),
    );
    await waitFor(4);
    await expect
      .poll(async () => runInProcess(['outbox', 'status'], env()), {
        message: 'the relay to have deleted the messages it published',
      })
      .toMatchObject({ stdout: 'no messages waiting\n' });
    child.kill('SIGTERM');
    expect(await exited).toMatchObject({
      code: 0,
      stdout: 'stopped; published 4 messages\n',
      stderr: '',
    });
    expect(delivered.map((message) => message.messageId)).toEqual(ids);
  });

  it('fails with exit code 1 when the broker does not answer, without printing its password', async () => {
    const run = await runInProcess(
      ['outbox', 'relay', '--amqp-url', 'amqp://guest:s3cret-pw@127.0.0.1:1'],
      env(),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('cannot connect to RabbitMQ');
    expect(run.stderr).toContain('ECONNREFUSED');
    expect(run.stderr).not.toContain('s3cret-pw');
  });
});
