/**
 * The order service, the outbox relay and the payments consumer, run together while the relays
 * and the consumer are SIGKILLed and restarted: every order is charged exactly once.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node examples/messaging/demo.ts
 *
 * Uses RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672); creates an exchange and
 * a queue of its own and deletes them at the end, as it drops its database.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'amqplib';
import { sql } from 'kysely';
import { provisionDatabase } from '../payment-service/database.ts';
import { placeOrder } from './order-service.ts';
import { brokerNames, openDatabase, prepareDatabase } from './schema.ts';
import { type ServiceProcess, startService } from './service-process.ts';

const CUSTOMERS = 40;
const ORDERS_PER_CUSTOMER = 10;
const CONCURRENCY = 16;
const CHAOS_INTERVAL_MS = 300;
const SETTLE_TIMEOUT_MS = 60_000;

const amqpUrl = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const prefix = process.env.EXAMPLE_PREFIX ?? `shop-${randomBytes(4).toString('hex')}`;
const names = brokerNames(prefix);
const database = await provisionDatabase();
const broker = await connect(amqpUrl);
const setup = await broker.createChannel();
const services: { relays: ServiceProcess[]; payments: ServiceProcess[] } = {
  relays: [],
  payments: [],
};
let exitCode = 1;

try {
  await prepareDatabase(database.url);
  await setup.assertExchange(names.exchange, 'topic', { durable: false });
  await setup.assertQueue(names.queue, { durable: false });
  await setup.bindQueue(names.queue, names.exchange, names.routingKey);
  const env = { DATABASE_URL: database.url, AMQP_URL: amqpUrl, EXAMPLE_PREFIX: prefix };
  let replays = 0;
  const log = (line: string) => {
    if (line === 'replayed a duplicate') replays++;
    else process.stderr.write(`  | ${line}\n`);
  };
  const start = (kind: 'relays' | 'payments') =>
    startService(kind === 'relays' ? './relay-main.ts' : './payments-main.ts', env, log);
  services.relays.push(await start('relays'), await start('relays'));
  services.payments.push(await start('payments'));

  const db = openDatabase(database.url, CONCURRENCY);
  const kills = { relays: 0, payments: 0 };
  let placing = true;
  // Meanwhile, a relay or the consumer dies every CHAOS_INTERVAL_MS, mid-publish or mid-charge,
  // and a new one takes its place.
  const chaos = (async () => {
    // At least a few of each, however fast the orders go in.
    for (let round = 0; placing || kills.relays < 4 || kills.payments < 2; round++) {
      await sleep(CHAOS_INTERVAL_MS);
      const kind = round % 3 === 2 ? 'payments' : 'relays';
      const victim = services[kind].shift();
      await victim?.kill();
      kills[kind]++;
      services[kind].push(await start(kind));
    }
  })();

  const orders = Array.from({ length: CUSTOMERS * ORDERS_PER_CUSTOMER }, (_, index) => ({
    key: randomUUID(),
    order: {
      orderId: `order-${index}`,
      customer: `c${index % CUSTOMERS}`,
      amount: 100 + index,
    },
  }));
  let replaysMatching = 0;
  const queue = [...orders];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const first = await placeOrder(db, next.key, next.order);
        // The client did not see the answer and retries with the same key: a replay.
        const retry = await placeOrder(db, next.key, next.order);
        if (retry.replayed && JSON.stringify(retry.response) === JSON.stringify(first.response)) {
          replaysMatching++;
        }
      }
    }),
  );
  placing = false;
  await chaos;

  // Whatever was in flight at the last kill is published again and deduplicated: wait for the
  // outbox to drain and the charges to stop changing.
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  let counts = await countAll(db);
  while (Date.now() < deadline) {
    await sleep(250);
    const now = await countAll(db);
    const settled =
      now.unsent === 0 && now.charges === counts.charges && now.charges >= orders.length;
    counts = now;
    if (settled) break;
  }
  const chargedTwice = await sql<{ n: number }>`
    select count(*)::int as n from (
      select order_id from charges group by order_id having count(*) > 1) twice`.execute(db);
  const uncharged = await sql<{ n: number }>`
    select count(*)::int as n from orders o
     where not exists (select 1 from charges c where c.order_id = o.id)`.execute(db);
  await db.destroy();

  const twice = chargedTwice.rows[0]?.n ?? -1;
  const missing = uncharged.rows[0]?.n ?? -1;
  console.log(
    `orders placed      ${counts.orders} (each retried once: ${replaysMatching} replays equal to the first answer)`,
  );
  console.log(
    `messages consumed  ${counts.consumed} distinct ids; ${counts.unsent} left unsent in the outbox`,
  );
  console.log(
    `processes killed   ${kills.relays} relays, ${kills.payments} payment consumers (SIGKILL)`,
  );
  console.log(`duplicates         ${replays} deliveries replayed by the consumer, not charged`);
  console.log(`charges            ${counts.charges}`);
  console.log(`charged twice      ${twice}`);
  console.log(`never charged      ${missing}`);
  const ok =
    counts.orders === orders.length &&
    replaysMatching === orders.length &&
    counts.charges === orders.length &&
    counts.consumed === orders.length &&
    counts.unsent === 0 &&
    twice === 0 &&
    missing === 0;
  console.log(ok ? 'every order charged exactly once' : 'FAILED');
  exitCode = ok ? 0 : 1;
} finally {
  await Promise.all([...services.relays, ...services.payments].map((each) => each.stop()));
  await setup.deleteQueue(names.queue).catch(() => undefined);
  await setup.deleteExchange(names.exchange).catch(() => undefined);
  await broker.close().catch(() => undefined);
  await database.dispose();
}
process.exit(exitCode);

async function countAll(db: ReturnType<typeof openDatabase>) {
  // The relay deletes a message once the broker confirmed it: what is left is unsent. The ledger
  // entries of the payments scope are the message ids the consumer processed.
  const { rows } = await sql<{ orders: number; charges: number; consumed: number; unsent: number }>`
    select (select count(*)::int from orders) as orders,
           (select count(*)::int from charges) as charges,
           (select count(*)::int from idempotency.ledger
             where scope = 'payments:order-placed') as consumed,
           (select count(*)::int from idempotency.outbox) as unsent`.execute(db);
  const [row] = rows;
  if (!row) throw new Error('no counts');
  return row;
}
