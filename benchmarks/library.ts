// The benchmark measures the package as it ships: dist/, built by `npm run build` (which
// `npm run bench` runs first), never src/. The types come from src/ so that type-checking works
// without a build (CI type-checks before it builds); the code is loaded from dist/ at runtime.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Library = typeof import('../src/index.ts');

/**
 * Imports a built module, `dist/<file>`, typed as its source in src/:
 * `importBuilt<typeof import('../src/express/index.ts')>('express/index.js')`.
 */
export async function importBuilt<Module>(file: string): Promise<Module> {
  const entry = new URL(`../dist/${file}`, import.meta.url);
  if (!existsSync(fileURLToPath(entry))) {
    throw new Error(
      `dist/${file} is missing: run \`npm run build\` first (\`npm run bench\` does)`,
    );
  }
  // A variable specifier: TypeScript must not resolve dist/ (absent before a build).
  return (await import(entry.href)) as Module;
}

const library = await importBuilt<Library>('index.js');

export const {
  cleanupExpired,
  fingerprintRequest,
  handlePoolErrors,
  migrate,
  ReplayCache,
  WITH_IDEMPOTENCY_CHANNEL,
  withIdempotency,
} = library;
