import { readdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { runCommand } from './run-command.ts';

export interface Tarball {
  /** Absolute path of the .tgz. */
  file: string;
  /** Bytes of the .tgz, and of its files unpacked. */
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

/** The parts of package.json that say what ships. */
export interface PackageManifest {
  name: string;
  license: string;
  main?: string;
  types?: string;
  exports: Record<string, string | Record<string, string>>;
  bin: Record<string, string>;
}

/**
 * Packs the package as `npm publish` would, from the dist/ already built (`--ignore-scripts`:
 * CI has just built it, and a second build would double the time).
 *
 * @example
 * ```ts
 * const tarball = await packTarball(root, scratchDir);
 * ```
 */
export async function packTarball(root: string, destination: string): Promise<Tarball> {
  const { stdout } = await runCommand(
    'npm',
    ['pack', '--ignore-scripts', '--json', '--pack-destination', destination],
    { cwd: root },
  );
  const [packed] = JSON.parse(stdout) as {
    filename: string;
    size: number;
    unpackedSize: number;
    files: { path: string; size: number }[];
  }[];
  if (!packed) throw new Error('npm pack reported no tarball');
  return { ...packed, file: join(destination, packed.filename) };
}

/**
 * What is wrong with the tarball's content list: a file that package.json points at but that is
 * missing (with the declarations TypeScript looks for beside it), a migration that does not ship,
 * a missing LICENSE, or a source map whose sources do not ship.
 *
 * @example
 * ```ts
 * const problems = await tarballProblems(root, tarball, manifest);
 * ```
 */
export async function tarballProblems(
  root: string,
  tarball: Tarball,
  manifest: PackageManifest,
): Promise<string[]> {
  const shipped = new Set(tarball.files.map((file) => file.path));
  const problems: string[] = [];
  const expect = (path: string, why: string) => {
    if (!shipped.has(path)) problems.push(`${path} does not ship (${why})`);
  };
  for (const path of ['package.json', 'README.md', 'LICENSE']) expect(path, 'always');
  for (const [subpath, targets] of Object.entries(manifest.exports)) {
    for (const target of typeof targets === 'string' ? [targets] : Object.values(targets)) {
      expect(posix.normalize(target), `exports["${subpath}"]`);
      // TypeScript finds index.d.ts beside index.js, and index.d.cts beside index.cjs.
      const types = target.replace(/\.js$/, '.d.ts').replace(/\.cjs$/, '.d.cts');
      if (types !== target) expect(posix.normalize(types), `the types of exports["${subpath}"]`);
    }
  }
  for (const field of [manifest.main, manifest.types]) {
    if (field) expect(posix.normalize(field), 'main/types, for moduleResolution node10');
  }
  for (const [name, target] of Object.entries(manifest.bin)) {
    expect(posix.normalize(target), `bin "${name}"`);
  }
  for (const name of await readdir(join(root, 'migrations'))) {
    expect(`migrations/${name}`, 'a migration of this version');
  }
  const license = await readFile(join(root, 'LICENSE'), 'utf8').catch(() => '');
  if (!license.startsWith(`${manifest.license} License`)) {
    problems.push(`LICENSE does not start with "${manifest.license} License" (package.json)`);
  }
  for (const map of [...shipped].filter((path) => path.endsWith('.map'))) {
    const { sources } = JSON.parse(await readFile(join(root, map), 'utf8')) as {
      sources: string[];
    };
    for (const source of sources) {
      const path = posix.join(posix.dirname(map), source);
      if (!shipped.has(path)) problems.push(`${map} points at ${source}, which does not ship`);
    }
  }
  return problems;
}

/**
 * One line per top-level folder of the tarball (files, bytes), then the totals.
 *
 * @example
 * ```ts
 * console.log(describeTarball(tarball));
 * ```
 */
export function describeTarball(tarball: Tarball): string {
  const folders = new Map<string, { count: number; bytes: number }>();
  for (const { path, size } of tarball.files) {
    const top = path.includes('/') ? `${path.slice(0, path.indexOf('/'))}/` : path;
    const folder = folders.get(top) ?? { count: 0, bytes: 0 };
    folders.set(top, { count: folder.count + 1, bytes: folder.bytes + size });
  }
  const kB = (bytes: number) => `${(bytes / 1000).toFixed(1)} kB`;
  const rows = [...folders]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(
      ([top, { count, bytes }]) =>
        `    ${top.padEnd(14)} ${String(count).padStart(4)} files  ${kB(bytes).padStart(9)}`,
    );
  return [
    ...rows,
    `  ${tarball.files.length} files, ${kB(tarball.unpackedSize)} unpacked, ${kB(tarball.size)} packed`,
  ].join('\n');
}
