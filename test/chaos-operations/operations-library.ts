/**
 * The library under test, loaded from a directory: the project's `src/`, or a deliberately broken
 * copy of it (see broken-library.ts). The clients and the completer load the same one, so that
 * `instanceof` checks match the classes that threw.
 */
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface OperationsLibrary {
  core: typeof import('../../src/index.ts');
  operations: typeof import('../../src/operations/index.ts');
}

/** The project's own sources. */
export const SOURCE_DIR = fileURLToPath(new URL('../../src/', import.meta.url));

export async function loadOperationsLibrary(dir: string): Promise<OperationsLibrary> {
  const load = (file: string) => import(pathToFileURL(join(dir, file)).href);
  const [core, operations] = await Promise.all([load('index.ts'), load('operations/index.ts')]);
  return { core, operations };
}
