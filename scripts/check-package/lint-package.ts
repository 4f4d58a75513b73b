import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from './run-command.ts';

interface AttwProblem {
  kind: string;
  entrypoint?: string;
  resolutionKind?: string;
}

/**
 * Runs "Are the types wrong?" on the tarball: every entry point must resolve, with types of the
 * right module system, under node16 from CommonJS and from ESM and under bundler resolution. The
 * root must also resolve under node10 (`"module": "commonjs"` projects), through `main` and
 * `types`; subpaths cannot without `typesVersions` tricks, and are not required to there.
 *
 * @example
 * ```ts
 * const problems = await arethetypeswrong(root, tarball.file);
 * ```
 */
export async function arethetypeswrong(root: string, tarball: string): Promise<string[]> {
  const attw = join(root, 'node_modules/.bin/attw');
  // Into a file, not a pipe: attw exits with process.exit(), which cuts a large report written to
  // a pipe short (one entry point per subpath makes it well over 100 kB).
  const dir = await mkdtemp(join(tmpdir(), 'attw-'));
  let report: string;
  try {
    const file = join(dir, 'report.json');
    await runCommand('sh', ['-c', '"$0" "$1" --format json > "$2"', attw, tarball, file], {
      cwd: root,
      allowedExitCodes: [0, 1],
    });
    report = await readFile(file, 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const { analysis } = JSON.parse(report) as { analysis: { problems?: AttwProblem[] } };
  const problems = (analysis.problems ?? []).filter(
    (problem) => !(problem.resolutionKind === 'node10' && problem.entrypoint !== '.'),
  );
  if (problems.length === 0) return [];
  const { stdout: table } = await runCommand(attw, [tarball, '--format', 'ascii'], {
    cwd: root,
    allowedExitCodes: [0, 1],
  });
  return [
    ...problems.map((p) => `attw: ${p.kind} (${p.entrypoint ?? ''} ${p.resolutionKind ?? ''})`),
    table,
  ];
}

/**
 * Runs publint on the tarball, warnings counted as errors.
 *
 * @example
 * ```ts
 * const problems = await publint(root, tarball.file);
 * ```
 */
export async function publint(root: string, tarball: string): Promise<string[]> {
  const result = await runCommand(
    join(root, 'node_modules/.bin/publint'),
    ['run', tarball, '--strict'],
    { cwd: root, allowedExitCodes: [0, 1] },
  );
  const output = `${result.stdout}${result.stderr}`;
  return result.exitCode === 0 && /All good!/.test(output) ? [] : [`publint:\n${output}`];
}
