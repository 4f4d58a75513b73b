import { z } from 'zod';

/**
 * Text Postgres can store: no NUL, well-formed Unicode (a lone surrogate has no UTF-8 form, and
 * Postgres refuses it in jsonb), at most `maxBytes` bytes of UTF-8: the limits below are those of
 * the brokers and of the indexes, which count bytes, not UTF-16 code units.
 */
function storableText(maxBytes: number, minLength = 1) {
  return z
    .string()
    .min(minLength)
    .refine((text) => !text.includes('\0'), 'must not contain NUL')
    .refine((text) => text.isWellFormed(), 'must be well-formed Unicode (no lone surrogates)')
    .refine(
      (text) => Buffer.byteLength(text, 'utf8') <= maxBytes,
      `must be at most ${maxBytes} bytes of UTF-8`,
    );
}

/** The Postgres schema of the outbox tables; quoted as an identifier, so any name is safe. */
export const schemaName = storableText(63).refine(
  (name) => Buffer.byteLength(name, 'utf8') <= 63,
  'must be at most 63 bytes of UTF-8 (Postgres truncates longer names)',
);

// Indexed in three primary keys; a btree entry holds at most about 2700 bytes. 1000 bytes stays
// well under it and accepts every ASCII name the outbox accepted before it counted bytes.
export const streamName = storableText(1000);
// An AMQP routing key and message-id are short strings: at most 255 bytes.
export const topicName = storableText(255);
export const messageIdText = storableText(255);

/** Header names and values as AMQP and NATS both carry them: strings (AMQP's names: short strings). */
export const messageHeaders = z.record(storableText(255), storableText(Number.MAX_SAFE_INTEGER, 0));
