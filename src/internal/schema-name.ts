import { z } from 'zod';

/** Default Postgres schema that holds the ledger. */
export const DEFAULT_SCHEMA = 'idempotency';

/** Postgres truncates identifiers longer than this many bytes (NAMEDATALEN - 1). */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * The name of the Postgres schema that holds the ledger, as every entry point accepts it. It is
 * always quoted as an identifier, so any text is safe; the limit is counted in UTF-8 bytes because
 * Postgres truncates longer names silently, and two long names would then share one ledger.
 */
export const schemaNameSchema = z
  .string()
  .min(1)
  .refine((name) => !name.includes('\0'), 'must not contain NUL')
  .refine((name) => name.isWellFormed(), 'must be well-formed Unicode (no lone surrogates)')
  .refine(
    (name) => Buffer.byteLength(name, 'utf8') <= MAX_IDENTIFIER_BYTES,
    `must be at most ${MAX_IDENTIFIER_BYTES} bytes of UTF-8 (Postgres truncates longer names)`,
  )
  // The ledger's functions find their table through the search_path they were created with, and
  // a search_path reads "$user", quoted or not, as the schema named after the current role.
  .refine(
    (name) => name !== '$user',
    'must not be "$user" (a search_path reads it as the current role\'s schema)',
  )
  .refine(
    (name) => !name.startsWith('pg_'),
    'must not start with "pg_" (Postgres reserves it for system schemas)',
  );
