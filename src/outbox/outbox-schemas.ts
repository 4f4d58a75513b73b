import { z } from 'zod';

/** Text Postgres can store: no NUL, well-formed Unicode. */
function storableText(maxLength: number) {
  return z
    .string()
    .min(1)
    .max(maxLength)
    .refine((text) => !text.includes('\0'), 'must not contain NUL')
    .refine((text) => text.isWellFormed(), 'must be well-formed Unicode');
}

/** The Postgres schema of the outbox tables; quoted as an identifier, so any name is safe. */
export const schemaName = storableText(63).refine(
  (name) => Buffer.byteLength(name, 'utf8') <= 63,
  'must be at most 63 bytes of UTF-8 (Postgres truncates longer names)',
);

export const streamName = storableText(1000);
export const topicName = storableText(1000);
export const messageIdText = storableText(255);

/** Header names and values as AMQP and NATS both carry them: strings. */
export const messageHeaders = z.record(
  storableText(1000),
  z.string().refine((v) => !v.includes('\0'), 'must not contain NUL'),
);
