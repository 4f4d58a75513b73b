import { z } from 'zod';
import { InvalidIdempotencyOptionsError, validateIdempotencyOptions } from '../index.ts';

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

/**
 * The Postgres schema of the outbox tables: the ledger's, so it follows the core's rules for a
 * ledger schema (at most 63 bytes, not `$user`, not `pg_...`), checked by the core itself.
 */
export const schemaName = z.string().superRefine((name, context) => {
  try {
    validateIdempotencyOptions({ scope: 'outbox', schema: name });
  } catch (error) {
    if (!(error instanceof InvalidIdempotencyOptionsError)) throw error;
    for (const issue of error.issues) {
      context.addIssue({ code: 'custom', message: issue.replace(/^schema: /, '') });
    }
  }
});

// Indexed in three primary keys; a btree entry holds at most about 2700 bytes. 1000 bytes stays
// well under it and accepts every ASCII name the outbox accepted before it counted bytes.
export const streamName = storableText(1000);
// An AMQP routing key and message-id are short strings: at most 255 bytes.
export const topicName = storableText(255);
export const messageIdText = storableText(255);

/** Header names and values as AMQP and NATS both carry them: strings (AMQP's names: short strings). */
export const messageHeaders = z.record(storableText(255), storableText(Number.MAX_SAFE_INTEGER, 0));
