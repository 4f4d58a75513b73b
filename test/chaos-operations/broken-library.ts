/**
 * A copy of the library that does not check the fencing token when it records a step or finishes
 * an operation: what the chaos run must catch. Written under `.scratch/` (git-ignored) inside the
 * project, so that its imports of kysely and zod resolve to the project's node_modules.
 */
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SOURCE_DIR } from './operations-library.ts';

// biome-ignore lint/suspicious/noTemplateCurlyInString: the SQL template's text, searched for
const FENCE = 'and fencing_token = ${fencingToken}::bigint ';

/** Makes the copy; returns its `src` directory and a function that removes it. */
export async function makeBrokenLibrary(): Promise<{ dir: string; remove(): Promise<void> }> {
  const root = fileURLToPath(new URL(`../../.scratch/no-fencing-${process.pid}/`, import.meta.url));
  const dir = join(root, 'src');
  await cp(SOURCE_DIR, dir, { recursive: true });
  const store = join(dir, 'operations', 'operation-store.ts');
  const text = await readFile(store, 'utf8');
  // The fences of recordStep and finishOperation, the two functions between these markers;
  // renewals and releases stay fenced, so the heartbeat still notices a lost lease.
  const from = text.indexOf('export async function recordStep');
  const to = text.indexOf('export async function renewLease');
  const fenced = text.slice(from, to);
  if (from < 0 || to < from || fenced.split(FENCE).length !== 3) {
    throw new Error('operation-store.ts changed: update the fences broken-library.ts removes');
  }
  const broken = text.slice(0, from) + fenced.replaceAll(FENCE, '') + text.slice(to);
  await writeFile(store, broken);
  return { dir, remove: () => rm(root, { recursive: true, force: true }) };
}
