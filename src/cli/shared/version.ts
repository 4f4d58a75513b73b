import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'idempotency-ledger';

/**
 * The version in this package's package.json, read at run time. It walks up from this module to
 * the first package.json named idempotency-ledger, so the same code finds it from `src/cli/shared/`,
 * from `dist/`, and from a build that sits deeper and has a package.json of its own (a CommonJS
 * build in `dist/cjs/` with `{"type": "commonjs"}`).
 *
 * @example
 * ```ts
 * packageVersion(); // '0.1.0'
 * ```
 */
export function packageVersion(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = readManifest(join(directory, 'package.json'));
    if (manifest?.name === PACKAGE_NAME && typeof manifest.version === 'string') {
      return manifest.version;
    }
    const parent = dirname(directory);
    if (parent === directory) throw new Error(`the package.json of ${PACKAGE_NAME} is missing`);
    directory = parent;
  }
}

function readManifest(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined; // none here, or not ours to read: keep walking up
  }
}
