import {
  type BatchItemResult,
  InvalidIdempotencyOptionsError,
  isValidIdempotencyKey,
  type Jsonified,
  MAX_BATCH_ITEMS,
  withIdempotencyBatch,
} from '../index.ts';
import type { AnyKysely } from './adapter-options.ts';
import {
  type AdapterDelivery,
  type ConsumeResult,
  consumeResolved,
  type Delivery,
  type MessageHandler,
} from './consume-once.ts';
import {
  type ConsumerOptions,
  ledgerOptions,
  type ResolvedConsumerOptions,
  resolveConsumerOptions,
} from './consumer-options.ts';

/**
 * Processes many delivered messages at most once each per (scope, message id), in ONE transaction
 * ({@link withIdempotencyBatch}): one statement claims every message id, the handler runs for each
 * message not processed before, in turn, and one statement records every result. A batch costs
 * four database round trips plus the handler's, where {@link consumeOnce} costs four per message.
 *
 * The guarantees are `consumeOnce`'s, message by message: a processed message (a redelivery, a
 * duplicate publish, twice in the same batch) replays its result; a message without a valid id
 * (`isValidIdempotencyKey`) goes to `onDeadLetter` on its own, and the others stay in the batch;
 * acknowledge each only after this resolves.
 *
 * **Failure policy.** When the handler throws for one message (or anything else fails the batch:
 * a wait for a copy in flight elsewhere, a lost connection), the batch's transaction rolls back,
 * nothing of it is committed, and every message of the batch goes through `consumeOnce`, one by
 * one: the others are processed once, and the failing one is retried or dead-lettered exactly as
 * `consumeOnce` would. A message after its `maxAttempts` takes the same way, found before any
 * handler of the batch runs. The costs: handlers that ran in the rolled-back batch run again, so a
 * poison message runs its handler up to twice per delivery (in the batch, then in the fallback); a
 * copy in flight elsewhere can cost about twice `waitTimeoutMs` (waited for once in the batch, once
 * more in the fallback); and locks on the batch's keys are held until it commits, so keep batches
 * short (tens of messages).
 *
 * @param db - A `Kysely` instance (the batch runs in a transaction of its own).
 * @param deliveries - 0 to `MAX_BATCH_ITEMS` deliveries.
 * @returns One result per delivery, in the order of `deliveries`.
 * @throws {InvalidIdempotencyOptionsError} for invalid options, a `Transaction` as `db`, a
 *   delivery without a valid `attempt`, or more than `MAX_BATCH_ITEMS` deliveries (a programming error: nothing is settled).
 *
 * @example
 * ```ts
 * const results = await consumeBatch(
 *   db,
 *   { scope: 'orders', onDeadLetter: parkMessage },
 *   messages.map((message) => ({ message, messageId: message.id, attempt: message.deliveryCount })),
 *   async (trx, message) => {
 *     await trx.insertInto('orders').values(JSON.parse(message.body)).execute();
 *   },
 * );
 * results.forEach((result, i) =>
 *   result.outcome === 'retry' ? redeliverLater(messages[i]) : acknowledge(messages[i]),
 * );
 * ```
 */
export async function consumeBatch<K extends AnyKysely, M, R>(
  db: K,
  options: ConsumerOptions<M>,
  deliveries: readonly Delivery<M>[],
  handler: MessageHandler<K, M, R>,
): Promise<ConsumeResult<Jsonified<R>>[]> {
  const resolved = resolveConsumerOptions(options, 'consumeBatch');
  const issues: string[] = [];
  if (typeof handler !== 'function') issues.push('handler: must be a function');
  // Refused here: the batch would fail on it, and fall back to one transaction per message.
  if ((db as { isTransaction?: unknown } | null)?.isTransaction === true) {
    issues.push('db: a batch runs in its own transaction: pass a Kysely instance');
  }
  if (!Array.isArray(deliveries) || deliveries.length > MAX_BATCH_ITEMS) {
    issues.push(`deliveries: must be an array of at most ${MAX_BATCH_ITEMS} deliveries`);
  } else {
    deliveries.forEach((delivery, index) => {
      const attempt = (delivery as Partial<Delivery<M>> | null)?.attempt;
      if (!Number.isInteger(attempt) || (attempt as number) < 1) {
        issues.push(`deliveries.${index}.attempt: must be an integer >= 1`);
      }
    });
  }
  if (issues.length > 0) {
    throw new InvalidIdempotencyOptionsError({
      message: `Invalid consumeBatch call: ${issues.join('; ')}`,
      issues,
    });
  }
  return consumeBatchResolved(db, resolved, deliveries, handler);
}

/**
 * {@link consumeBatch} for options validated once, where an adapter was built. Internal: not
 * exported from the module's index.
 */
export async function consumeBatchResolved<K extends AnyKysely, M, R>(
  db: K,
  options: ResolvedConsumerOptions<M>,
  deliveries: readonly AdapterDelivery<M>[],
  handler: MessageHandler<K, M, R>,
): Promise<ConsumeResult<Jsonified<R>>[]> {
  const results: ConsumeResult<Jsonified<R>>[] = new Array(deliveries.length);
  // A delivery without a valid id (or whose id function threw) never reaches the ledger:
  // consumeOnce dead-letters it without a statement. In the batch, its id would fail every message.
  const withIds: { key: string; index: number; delivery: AdapterDelivery<M> }[] = [];
  for (const [index, delivery] of deliveries.entries()) {
    const { messageId } = delivery;
    if (delivery.idError !== undefined || !isValidIdempotencyKey(messageId)) {
      results[index] = await consumeResolved(db, options, delivery, handler);
    } else {
      withIds.push({ key: messageId, index, delivery });
    }
  }
  if (withIds.length === 0) return results;

  const batched = await runBatch(db, options, withIds, handler);
  if (batched) {
    batched.forEach((result, position) => {
      const item = withIds[position];
      if (item) results[item.index] = result;
    });
    return results;
  }
  // The batch rolled back: each message goes through consumeOnce on its own, so that one poison
  // message neither blocks the others nor gets them applied twice, and attempts and dead letters
  // are counted exactly as consumeOnce counts them.
  for (const { index, delivery } of withIds) {
    results[index] = await consumeResolved(db, options, delivery, handler);
  }
  return results;
}

/** The batch's results, or undefined when it failed and nothing of it was committed. */
async function runBatch<K extends AnyKysely, M, R>(
  db: K,
  options: ResolvedConsumerOptions<M>,
  items: readonly { key: string; delivery: AdapterDelivery<M> }[],
  handler: MessageHandler<K, M, R>,
): Promise<ConsumeResult<Jsonified<R>>[] | undefined> {
  let results: BatchItemResult<Jsonified<R>>[];
  try {
    results = await withIdempotencyBatch(
      db,
      ledgerOptions(options),
      items,
      async (trx, pending) => {
        // A pending message past its attempts (not processed: a processed one replays whatever its
        // count) is for consumeOnce to dead-letter. Checked before any handler runs, so that the
        // handlers of the messages before it do not run twice (here, then in the fallback).
        if (pending.some(({ delivery }) => delivery.attempt > options.maxAttempts)) {
          throw new AttemptsSpent();
        }
        const responses: R[] = [];
        for (const { delivery } of pending) responses.push(await handler(trx, delivery.message));
        return responses;
      },
    );
  } catch {
    // Whatever failed (the handler, a copy in flight elsewhere, the database), consumeOnce,
    // message by message, says whose failure it was.
    return undefined;
  }
  return results.map((result): ConsumeResult<Jsonified<R>> => {
    // A processed message whose result cannot be replayed (not decryptable): as consumeOnce,
    // retried, never dead-lettered.
    if (result.outcome === 'refused') return { outcome: 'retry', error: result.error };
    return {
      outcome: result.outcome === 'executed' ? 'processed' : 'replayed',
      response: result.response,
    };
  });
}

/** Stops a batch at a message whose attempts are spent, for consumeOnce to dead-letter it. */
class AttemptsSpent extends Error {}
