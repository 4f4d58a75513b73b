import { z } from 'zod';
import { IdempotencyError, InvalidIdempotencyOptionsError } from '../index.ts';
import { DEFAULT_OUTBOX_SCHEMA, parseOutboxInput } from './outbox-options.ts';
import {
  messageHeaders,
  messageIdText,
  schemaName,
  streamName,
  topicName,
} from './outbox-schemas.ts';
import {
  type AnyKysely,
  insertMessage,
  MESSAGE_ID_CONSTRAINT,
  type NewMessage,
} from './outbox-store.ts';
import { payloadJson } from './payload-json.ts';

/**
 * A message to publish once the transaction that enqueues it commits.
 *
 * @example
 * ```ts
 * const message: OutboxMessageInput = {
 *   stream: `order-${order.id}`, // messages of one stream are published in commit order
 *   topic: 'orders.created', // the routing key or subject, by default
 *   payload: { orderId: order.id, total: order.total },
 *   headers: { 'x-tenant': tenantId },
 * };
 * ```
 */
export interface OutboxMessageInput {
  /** Messages of one stream are published one at a time, in the order their transactions committed. */
  stream: string;
  /** Where the message goes: the publishers use it as routing key or subject unless told otherwise. */
  topic: string;
  /** Any JSON value; published as the JSON text `JSON.stringify` writes. */
  payload: unknown;
  /** String headers, published with the message. */
  headers?: Record<string, string>;
  /**
   * The message's id, which consumers deduplicate on; unique across the outbox. Default: a random
   * UUID. Give one derived from the change (`order-42-created`) to make enqueueing idempotent too.
   */
  messageId?: string;
}

/** Options of {@link enqueueMessage}. */
export interface EnqueueOptions {
  /**
   * Postgres schema of the outbox tables (the ledger's). Default `idempotency`.
   *
   * @example
   * ```ts
   * await enqueueMessage(trx, message, { schema: 'billing_ledger' });
   * ```
   */
  schema?: string;
  /**
   * The most bytes (UTF-8) a message's JSON payload may take; a longer one is refused with an
   * {@link InvalidIdempotencyOptionsError} before anything is written. Default: no limit. Set it
   * to what your broker accepts, less room for the headers: a message its broker refuses fails
   * every publish and blocks its stream. NATS refuses messages over the server's `max_payload`
   * (1 MB by default, headers included); RabbitMQ over its `max_message_size` (16 MiB by default
   * since RabbitMQ 4.0, 128 MiB before).
   *
   * @example
   * ```ts
   * await enqueueMessage(trx, message, { maxPayloadBytes: 1024 * 1024 - 4096 });
   * ```
   */
  maxPayloadBytes?: number;
}

/** What {@link enqueueMessage} inserted. */
export interface EnqueuedMessage {
  /** The id the message is published with. */
  messageId: string;
  /**
   * Its position in its stream: 1, 2, 3... without gaps, in commit order. A stream that a relay
   * emptied starts again at 1.
   */
  position: number;
}

/**
 * Another message of the outbox has this id. The statement failed, and with it the caller's
 * transaction: nothing it wrote commits. The id is kept as `key`, never in the message; `cause`
 * holds only the driver error's SQLSTATE and constraint (`{ code: '23505', constraint }`), since
 * its `detail` quotes the id.
 */
export class DuplicateOutboxMessageError extends IdempotencyError {
  constructor(options: { messageId: string; cause?: { code: string; constraint: string } }) {
    super({
      code: 'outbox_duplicate_message_id',
      message: 'Another message in the outbox has this messageId',
      key: options.messageId,
      cause: options.cause,
    });
  }
}

const inputSchema = z.strictObject({
  stream: streamName,
  topic: topicName,
  payload: z.unknown(),
  headers: messageHeaders.optional(),
  messageId: messageIdText.optional(),
});
const optionsSchema = z.strictObject({
  schema: schemaName.default(DEFAULT_OUTBOX_SCHEMA),
  maxPayloadBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});

/**
 * Writes a message to the outbox in the caller's transaction: it is published (by
 * {@link createOutboxRelay}) if and only if that transaction commits. Use the transaction of
 * `withIdempotency`, or any Kysely transaction of your own.
 *
 * The stream's position counter stays locked until the transaction ends, so producers of one
 * stream commit one after the other: enqueue last, just before the commit.
 *
 * @throws {InvalidIdempotencyOptionsError} for an invalid message or options, or a `trx` that is
 *   not a transaction. Nothing was written.
 * @throws {NotJsonError} for a payload that JSON cannot hold as it is. Nothing was written.
 *   A payload longer than `maxPayloadBytes` is an {@link InvalidIdempotencyOptionsError}.
 * @throws {DuplicateOutboxMessageError} when the `messageId` is taken (the transaction is aborted).
 *
 * @example
 * ```ts
 * await withIdempotency(db, { scope: 'orders', key }, async (trx) => {
 *   const order = await trx.insertInto('orders').values(input).returningAll().executeTakeFirstOrThrow();
 *   await enqueueMessage(trx, { stream: `order-${order.id}`, topic: 'orders.created', payload: order });
 *   return order;
 * });
 * ```
 */
export async function enqueueMessage(
  trx: AnyKysely,
  message: OutboxMessageInput,
  options: EnqueueOptions = {},
): Promise<EnqueuedMessage> {
  const [result] = await enqueueMessages(trx, [message], options);
  if (!result) throw new Error('enqueueMessages returned nothing for one message');
  return result;
}

/**
 * {@link enqueueMessage} for several messages, in array order (positions follow it within each
 * stream). Every message is checked before the first is written.
 *
 * @example
 * ```ts
 * await enqueueMessages(trx, [
 *   { stream, topic: 'orders.created', payload: order },
 *   { stream, topic: 'orders.paid', payload: payment },
 * ]);
 * ```
 */
export async function enqueueMessages(
  trx: AnyKysely,
  messages: readonly OutboxMessageInput[],
  options: EnqueueOptions = {},
): Promise<EnqueuedMessage[]> {
  assertTransaction(trx);
  if (!Array.isArray(messages)) {
    throw new InvalidIdempotencyOptionsError({
      message: 'enqueueMessages needs an array of messages',
      issues: ['messages: must be an array'],
    });
  }
  const { schema, maxPayloadBytes } = parseOutboxInput(
    optionsSchema,
    options,
    'enqueueMessage options',
  );
  const checked: NewMessage[] = messages.map((message) => {
    const parsed = parseOutboxInput(inputSchema, message, 'outbox message');
    const payloadText = payloadJson(parsed.payload);
    if (maxPayloadBytes !== undefined) assertPayloadFits(payloadText, maxPayloadBytes);
    return {
      stream: parsed.stream,
      topic: parsed.topic,
      payloadText,
      headers: parsed.headers ?? {},
      messageId: parsed.messageId,
    };
  });
  const enqueued: EnqueuedMessage[] = [];
  for (const message of checked) {
    try {
      enqueued.push(await insertMessage(trx, schema, message));
    } catch (error) {
      if (isDuplicateId(error) && message.messageId !== undefined) {
        // Not the pg error itself: its detail reads "Key (message_id)=(...) already exists".
        throw new DuplicateOutboxMessageError({
          messageId: message.messageId,
          cause: { code: '23505', constraint: MESSAGE_ID_CONSTRAINT },
        });
      }
      throw error;
    }
  }
  return enqueued;
}

function assertPayloadFits(payloadText: string, maxPayloadBytes: number): void {
  const bytes = Buffer.byteLength(payloadText, 'utf8');
  if (bytes <= maxPayloadBytes) return;
  const issue = `payload: is ${bytes} bytes of JSON, more than maxPayloadBytes (${maxPayloadBytes})`;
  throw new InvalidIdempotencyOptionsError({
    message: `Invalid outbox message: ${issue}`,
    issues: [issue],
  });
}

/** Refuses a Kysely instance that is not a transaction: each statement would commit on its own. */
function assertTransaction(trx: unknown): void {
  const candidate = trx as { isTransaction?: unknown } | null;
  if (typeof trx === 'object' && candidate !== null && candidate.isTransaction === true) return;
  throw new InvalidIdempotencyOptionsError({
    message:
      'enqueueMessage needs a Kysely transaction (the one your business writes use), not a Kysely instance or a pg client',
    issues: ['trx: must be a Kysely transaction'],
  });
}

function isDuplicateId(error: unknown): boolean {
  const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  return code === '23505' && constraint === MESSAGE_ID_CONSTRAINT;
}
