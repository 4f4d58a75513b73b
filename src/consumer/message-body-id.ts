import { createHash } from 'node:crypto';

/**
 * An id derived from a message's body: `sha256:` and the SHA-256 of its bytes in hex (71
 * characters). For messages whose producer sets no id, as an explicit choice:
 *
 * - two distinct messages with identical bodies are processed **once** (a second "add 10 to the
 *   balance" is taken for a duplicate): include something unique in the body (an event id, a
 *   timestamp of the business event) before relying on this;
 * - a retried publish whose body differs (a new timestamp added by the producer at each try) is
 *   **not** recognised as a duplicate.
 *
 * @example
 * ```ts
 * // `||`, not `??`: amqplib gives an absent message-id property as undefined, but a producer may
 * // set it to ''.
 * idempotentAmqpHandler(db, channel, {
 *   scope: 'orders',
 *   messageId: (msg) => msg.properties.messageId || messageBodyId(msg.content),
 *   onDeadLetter,
 *   handler,
 * });
 * ```
 */
export function messageBodyId(body: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}
