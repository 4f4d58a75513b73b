import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandFailedError, runCommand } from './run-command.ts';

/**
 * What a user installs beside the package: its peers (OpenTelemetry's API for the otel subpath),
 * and the types a TypeScript user adds. The
 * README's quick start uses Express.
 */
const USER_DEPENDENCIES = [
  'kysely',
  'pg',
  '@types/pg',
  '@types/node',
  'express',
  '@types/express',
  '@opentelemetry/api',
];

interface LockEntry {
  version?: string;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  dev?: boolean;
  devOptional?: boolean;
  peer?: boolean;
  [field: string]: unknown;
}
interface Lock {
  packages: Record<string, LockEntry>;
}
interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  bin?: Record<string, string>;
}

export interface ScratchProject {
  dir: string;
  type: 'module' | 'commonjs';
  /** `offline` when every package came from the npm cache, `registry` otherwise. */
  installedFrom: 'offline' | 'registry';
}

/**
 * Creates `dir` as a new project of the given module type and installs the packed tarball into it
 * with kysely, pg, Express and their types, at the versions this repository's lock file pins. It installs
 * from the npm cache alone when it can (`npm ci` of this repository has just filled it), so the
 * check neither waits for nor depends on the registry; it falls back to the registry otherwise.
 *
 * @example
 * ```ts
 * const project = await installScratchProject({ root, dir: '/tmp/x/cjs', type: 'commonjs', tarball });
 * ```
 */
export async function installScratchProject(options: {
  root: string;
  dir: string;
  type: 'module' | 'commonjs';
  tarball: string;
}): Promise<ScratchProject> {
  const { root, dir, type, tarball } = options;
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lock;
  const library = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageJson;
  const pinned = Object.fromEntries(
    USER_DEPENDENCIES.map((name) => {
      const version = lock.packages[`node_modules/${name}`]?.version;
      if (!version) throw new Error(`package-lock.json pins no version of ${name}`);
      return [name, version];
    }),
  );
  const name = `package-check-${type}`;
  const dependencies = { [library.name]: `file:${tarball}`, ...pinned };
  await mkdir(dir, { recursive: true });
  await writeJson(join(dir, 'package.json'), { name, private: true, type, dependencies });
  await writeJson(join(dir, 'package-lock.json'), {
    name,
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name, dependencies },
      [`node_modules/${library.name}`]: {
        version: library.version,
        resolved: `file:${tarball}`,
        dependencies: library.dependencies,
        peerDependencies: library.peerDependencies,
        // Without it npm ci finds the optional peers (fastify, hono) missing from the lock.
        peerDependenciesMeta: library.peerDependenciesMeta,
        bin: library.bin,
      },
      ...closure(lock, [...USER_DEPENDENCIES, ...Object.keys(library.dependencies ?? {})]),
    },
  });
  const quiet = ['--no-audit', '--no-fund', '--loglevel=error'];
  try {
    await runCommand('npm', ['ci', '--offline', ...quiet], { cwd: dir });
    return { dir, type, installedFrom: 'offline' };
  } catch (error) {
    if (!(error instanceof CommandFailedError)) throw error;
    const reason = error.message.split('\n').find((line) => line.startsWith('npm error'));
    console.log(
      `  ${type}: not installable from the npm cache alone (${reason}); using the registry`,
    );
    await runCommand('npm', ['install', '--prefer-offline', ...quiet], { cwd: dir });
    return { dir, type, installedFrom: 'registry' };
  }
}

/**
 * The lock entries the named root packages need, at the places this repository's lock puts
 * them: nested copies stay nested, so every package resolves its dependencies exactly as here.
 */
function closure(lock: Lock, names: string[]): Record<string, LockEntry> {
  const found: Record<string, LockEntry> = {};
  const pending = names.map((name) => locate(lock, '', name));
  while (pending.length > 0) {
    const location = pending.pop();
    if (location === undefined || found[location]) continue;
    // Development flags describe this repository, not the scratch project.
    const { dev, devOptional, peer, ...entry } = lock.packages[location] ?? {};
    found[location] = entry;
    const wanted = {
      ...entry.dependencies,
      ...entry.optionalDependencies,
      ...entry.peerDependencies,
    };
    for (const dependency of Object.keys(wanted)) pending.push(locate(lock, location, dependency));
  }
  return found;
}

/** Node's lookup, on lock file paths: `from`/node_modules/`name`, then each parent's. */
function locate(lock: Lock, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
    if (lock.packages[candidate]) return candidate;
    if (!base) return undefined;
    const parent = base.lastIndexOf('/node_modules/');
    base = parent === -1 ? '' : base.slice(0, parent);
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
}
