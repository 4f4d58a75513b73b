// Builds the package twice from src/: ESM (`.js`, `.d.ts`) and CommonJS (`.cjs`, `.d.cts`), side
// by side in dist/, one output file per source file.
//
// The entry points come from package.json: every `import` target of the `exports` map, plus the
// `bin`. Adding a subpath is one line there, `"./http": { "import": "./dist/http/index.js",
// "require": "./dist/http/index.cjs" }`, and this config, scripts/check-package.ts and
// TypeScript (which finds `index.d.ts` beside `index.js` and `index.d.cts` beside `index.cjs`)
// all follow it.
import { readFileSync } from 'node:fs';
import { defineConfig, type UserConfig } from 'tsdown';

type Target = string | { import?: string; require?: string };
const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, Target>;
  bin: Record<string, string>;
};

/** `./dist/http/index.js` -> `src/http/index.ts`. */
function sourceOf(built: string): string {
  const match = /^\.\/dist\/(.+)\.js$/.exec(built);
  if (!match) throw new Error(`package.json points at ${built}, which is not ./dist/<path>.js`);
  return `src/${match[1]}.ts`;
}

const libraryEntries = Object.values(pkg.exports).flatMap((target) =>
  typeof target === 'object' && target.import ? [sourceOf(target.import)] : [],
);
const binEntries = Object.values(pkg.bin).map(sourceOf);

const shared = {
  // One file per source file, as tsc would write them: dist/ mirrors src/, so a path computed
  // relative to a module (the migrations/ folder) is the same from both formats.
  unbundle: true,
  // `.js` is ESM here ("type": "module"); CommonJS gets `.cjs`.
  fixedExtension: false,
  platform: 'node',
  tsconfig: 'tsconfig.build.json',
  dts: true,
  // JavaScript and declaration maps point at src/, which ships; the maps do not carry the
  // sources a second time.
  sourcemap: true,
  outputOptions: { sourcemapExcludeSources: true },
  // The ESM-vs-CommonJS advice does not apply: both are shipped on purpose. The timings report
  // says that declarations (tsc) take most of the build, which is expected.
  checks: { legacyCjs: false, bundlerTimings: false },
  failOnWarn: true,
  report: { summary: true },
} satisfies UserConfig;

export default defineConfig([
  // The CLI is ESM only: it is run, never required.
  { ...shared, entry: [...libraryEntries, ...binEntries], format: 'esm' },
  // `import.meta.url` is rewritten to the file's own URL in CommonJS output.
  { ...shared, entry: libraryEntries, format: 'cjs', clean: false },
]);
