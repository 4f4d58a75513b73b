/**
 * Tests what ships: packs the built package, installs the tarball into a new ESM project and a new
 * CommonJS project, and uses it there as a user would.
 *
 *   npm run build && node scripts/check-package.ts [--node /path/to/another/node ...] [--keep]
 *
 * - the tarball's content list (printed), arethetypeswrong and publint;
 * - every entry point of the `exports` map, loaded with `import` and with `require()`, resolves to
 *   the file of its module system; migrate() finds the shipped migrations; a first execution and a
 *   replay of withIdempotency against a real database (DATABASE_URL, or an embedded Postgres);
 *   once per Node binary (this one and each `--node`);
 * - the README's quick start, as written, type-checks in both projects (`module: nodenext`);
 * - `npx idempotency-ledger --help` runs.
 *
 * Everything happens in a temporary folder and a throwaway database, both removed at the end.
 * Any problem fails the script.
 */
import { glob, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  installScratchProject,
  type ScratchProject,
} from './check-package/install-scratch-project.ts';
import { arethetypeswrong, publint } from './check-package/lint-package.ts';
import {
  describeTarball,
  type PackageManifest,
  packTarball,
  tarballProblems,
} from './check-package/pack-tarball.ts';
import { extractQuickStart, QUICK_START_DECLARATIONS } from './check-package/readme-quick-start.ts';
import { runCommand, stopRunningCommands } from './check-package/run-command.ts';
import { type SmokeConfig, smokeProgram } from './check-package/smoke-program.ts';
import { createThrowawayDatabase } from './check-package/throwaway-database.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const started = performance.now();
const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;

async function step<T>(name: string, work: () => Promise<T>): Promise<T> {
  const stepStarted = performance.now();
  const result = await work();
  console.log(`✓ ${name} (${seconds(stepStarted)})`);
  return result;
}

function fail(problems: string[]): never {
  throw new Error(`\n${problems.map((problem) => `  ✗ ${problem}`).join('\n')}`);
}

const { values } = parseArgs({
  options: {
    node: { type: 'string', multiple: true, default: [] },
    // Keeps the scratch projects, to look into a failure.
    keep: { type: 'boolean', default: false },
  },
});
const nodes = [process.execPath, ...values.node];
const manifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageManifest;
const types = ['module', 'commonjs'] as const;

await refuseStaleBuild();
const scratch = await mkdtemp(join(tmpdir(), 'idempotency-ledger-package-check-'));
// Created while the projects install; awaited (and so dropped) on every way out.
const databaseCreated = createThrowawayDatabase();
databaseCreated.catch(() => undefined); // reported where it is awaited below
let cleanedUp: Promise<void> | undefined;
const cleanUp = () => {
  cleanedUp ??= (async () => {
    const database = await databaseCreated.catch(() => undefined);
    await database?.drop();
    if (values.keep) console.log(`Kept ${scratch}`);
    else await rm(scratch, { recursive: true, force: true });
  })();
  return cleanedUp;
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: removing the scratch projects and the database`);
    void stopRunningCommands()
      .then(cleanUp)
      .finally(() => process.exit(1));
  });
}

try {
  const tarball = await step('npm pack', () => packTarball(root, scratch));
  console.log(describeTarball(tarball));
  const contentProblems = await tarballProblems(root, tarball, manifest);
  if (contentProblems.length > 0) fail(contentProblems);

  const [projects, lintProblems, database] = await Promise.all([
    step('installed into a new ESM and a new CommonJS project', () =>
      Promise.all(
        types.map((type) =>
          installScratchProject({ root, dir: join(scratch, type), type, tarball: tarball.file }),
        ),
      ),
    ),
    step('arethetypeswrong and publint', async () =>
      (
        await Promise.all([arethetypeswrong(root, tarball.file), publint(root, tarball.file)])
      ).flat(),
    ),
    databaseCreated,
  ]);
  if (lintProblems.length > 0) fail(lintProblems);
  console.log(
    `  installed from ${projects.map((p) => `${p.installedFrom} (${label(p)})`).join(', ')}`,
  );
  console.log(`  database from ${database.source}`);

  for (const project of projects) {
    for (const [index, node] of nodes.entries()) {
      await step(`${label(project)}, ${await nodeVersion(node)}: smoke test`, () =>
        smokeTest(project, node, database.url, `${index}`),
      );
    }
  }
  await step('README quick start type-checks in both projects', () =>
    Promise.all(projects.map(typeCheckQuickStart)),
  );
  for (const node of nodes) {
    await step(
      `npx ${Object.keys(manifest.bin).join(', ')} --help, ${await nodeVersion(node)}`,
      () => Promise.all(projects.map((project) => runBinHelp(project, node))),
    );
  }
} finally {
  await cleanUp();
}
console.log(`Package check passed in ${seconds(started)}.`);

function label(project: ScratchProject): string {
  return project.type === 'commonjs' ? 'CommonJS' : 'ESM';
}

async function nodeVersion(node: string): Promise<string> {
  const { stdout } = await runCommand(node, ['--version'], { cwd: root });
  return `Node ${stdout.trim()}`;
}

/** The smoke program of smoke-program.ts, with this project's module system and that Node. */
async function smokeTest(
  project: ScratchProject,
  node: string,
  databaseUrl: string,
  run: string,
): Promise<void> {
  const { type } = project;
  const condition = type === 'module' ? 'import' : 'require';
  const entries: Record<string, string> = {};
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    const file = typeof target === 'string' ? target : target[condition];
    if (!file) fail([`exports["${subpath}"] has no "${condition}" condition`]);
    entries[posix.join(manifest.name, subpath)] = file.replace(/^\.\//, '');
  }
  const tag = `${type === 'module' ? 'esm' : 'cjs'}_${run}`;
  const config: SmokeConfig = {
    entries,
    packageName: manifest.name,
    databaseUrl,
    ledgerSchema: `ledger_${tag}`,
    table: `payments_${tag}`,
  };
  const file = join(project.dir, type === 'module' ? 'smoke.mjs' : 'smoke.cjs');
  await writeFile(file, smokeProgram(type));
  const { stdout } = await runCommand(node, [file], {
    cwd: project.dir,
    env: { ...process.env, PACKAGE_CHECK: JSON.stringify(config) },
  });
  console.log(`  ${stdout.trim()}`);
}

/** Type-checks the README's quick start as a new project of this kind would compile it. */
async function typeCheckQuickStart(project: ScratchProject): Promise<void> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  await writeFile(join(project.dir, 'quick-start.ts'), extractQuickStart(readme));
  await writeFile(join(project.dir, 'application.d.ts'), QUICK_START_DECLARATIONS);
  const compilerOptions = {
    module: 'nodenext',
    target: 'es2023',
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    // Checking every dependency's declarations would triple the time; arethetypeswrong has
    // already found each of ours, and their imports, resolvable.
    skipLibCheck: true,
    types: ['node'],
    noEmit: true,
  };
  await writeFile(
    join(project.dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions, files: ['quick-start.ts', 'application.d.ts'] }, null, 2),
  );
  await runCommand(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', '.'], {
    cwd: project.dir,
  });
}

/** The bin, through npx as a user runs it, on that Node (the bin's `#!/usr/bin/env node`). */
async function runBinHelp(project: ScratchProject, node: string): Promise<void> {
  for (const name of Object.keys(manifest.bin)) {
    const { stdout } = await runCommand('npx', ['--no-install', name, '--help'], {
      cwd: project.dir,
      env: { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}` },
    });
    if (!/migrate/.test(stdout)) fail([`npx ${name} --help printed no usage:\n${stdout}`]);
  }
}

/** A check of an old dist/ would pass or fail for the wrong reasons. */
async function refuseStaleBuild(): Promise<void> {
  const built = await stat(join(root, 'dist/index.js')).catch(() => undefined);
  if (!built) fail(['dist/ is missing: run `npm run build` first']);
  for await (const source of glob('src/**/*.ts', { cwd: root })) {
    if ((await stat(join(root, source))).mtimeMs > built.mtimeMs) {
      fail([`${source} is newer than dist/: run \`npm run build\` first`]);
    }
  }
}
