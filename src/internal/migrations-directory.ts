/**
 * Where the SQL files of the ledger live: `migrations/` at the root of the package, next to
 * `src/` when running from source and next to `dist/` once built. The only module that locates
 * them, so that a build for another module format has one line to adapt (`import.meta.url` is
 * ESM-only).
 */
import { fileURLToPath } from 'node:url';

export const MIGRATIONS_DIRECTORY = fileURLToPath(new URL('../../migrations/', import.meta.url));
