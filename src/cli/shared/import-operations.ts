import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isResponseEncryption, type ResponseEncryption } from '../../index.ts';
import { isOperation, type Operation } from '../../operations/index.ts';
import { CliError, EXIT_USAGE, usageError } from './cli-error.ts';
import { describeError } from './describe-error.ts';

// biome-ignore lint/suspicious/noExplicitAny: operations of any database and request type
type AnyOperation = Operation<any, any, any>;

/** An operation a module exports, and the export it was found under. */
export interface ExportedOperation {
  exportName: string;
  operation: AnyOperation;
}

/** What {@link importOperations} found in a module. */
export interface ImportedOperations {
  operations: ExportedOperation[];
  /** The one export built by `responseEncryption()`, if the module has one. */
  encryption?: ResponseEncryption | undefined;
}

/**
 * Imports the module at `path` (relative to `cwd`; ESM or CommonJS, or TypeScript where Node
 * strips types) and returns the operations it exports: every export made by `defineOperation`,
 * or only `exportName`; and the `encryption` the operations store with, when it exports one
 * built by `responseEncryption()`. A CommonJS module's `module.exports` object counts as its
 * exports.
 *
 * @throws {CliError} exit code 2, when there is no such file, it cannot be imported, it exports no
 *   operation (or `exportName` is not one), two exports define operations of the same name, or
 *   two exports are different encryptions.
 *
 * @example
 * ```ts
 * const found = await importOperations('./dist/operations.js', { cwd: process.cwd() });
 * // { operations: [{ exportName: 'createPayment', operation: createPayment }], encryption }
 * ```
 */
export async function importOperations(
  path: string,
  { cwd, exportName }: { cwd: string; exportName?: string | undefined },
): Promise<ImportedOperations> {
  const file = resolve(cwd, path);
  const isFile = await stat(file).then(
    (found) => found.isFile(),
    () => false,
  );
  if (!isFile) throw usageError(`--module ${path}: no such file (from ${cwd})`);
  let namespace: Record<string, unknown>;
  try {
    namespace = await import(pathToFileURL(file).href);
  } catch (error) {
    throw new CliError(`--module ${path} cannot be imported: ${summarize(error)}`, {
      exitCode: EXIT_USAGE,
      cause: error,
    });
  }
  const exports = exportsOf(namespace);
  const encryption = encryptionOf(exports, path);
  return { operations: operationsOf(exports, path, exportName), encryption };
}

function operationsOf(
  exports: Map<string, unknown>,
  path: string,
  exportName: string | undefined,
): ExportedOperation[] {
  if (exportName !== undefined) {
    const value = exports.get(exportName);
    if (!isOperation(value)) {
      throw usageError(
        value === undefined
          ? `--module ${path} has no export named ${JSON.stringify(exportName)}`
          : `--export ${exportName} is not an operation made by defineOperation`,
      );
    }
    return [{ exportName, operation: value }];
  }
  const found = new Map<AnyOperation, string>();
  for (const [name, value] of exports) {
    if (isOperation(value) && !found.has(value)) found.set(value, name);
  }
  if (found.size === 0) {
    const names = [...exports.keys()].join(', ') || 'none';
    throw usageError(
      `--module ${path} exports no operation made by defineOperation (exports: ${names})`,
    );
  }
  const operations = [...found].map(([operation, name]) => ({ exportName: name, operation }));
  refuseSharedNames(operations);
  return operations;
}

/**
 * The module's exports by name. For a CommonJS module, Node's detection of named exports can miss
 * some (`module.exports = build()`): the properties of `module.exports`, its default export, count
 * too.
 */
function exportsOf(namespace: Record<string, unknown>): Map<string, unknown> {
  const exports = new Map<string, unknown>();
  const main = namespace.default;
  if (typeof main === 'object' && main !== null && !isOperation(main)) {
    for (const [name, value] of Object.entries(main)) exports.set(name, value);
  }
  for (const [name, value] of Object.entries(namespace)) {
    // Node 24 adds it to a CommonJS namespace: the same object as the default export.
    if (name !== 'module.exports') exports.set(name, value);
  }
  return exports;
}

/** The module's encryption: the keys its operations' requests and results are stored with. */
function encryptionOf(exports: Map<string, unknown>, path: string): ResponseEncryption | undefined {
  const found = new Set([...exports.values()].filter(isResponseEncryption));
  if (found.size > 1) {
    throw usageError(
      `--module ${path} exports ${found.size} different encryptions (responseEncryption()); ` +
        'export the one its operations use',
    );
  }
  return [...found][0];
}

/** The completer finds the code of an operation by its name: one name, one code. */
function refuseSharedNames(operations: ExportedOperation[]): void {
  const byName = new Map<string, string>();
  for (const { exportName, operation } of operations) {
    const other = byName.get(operation.name);
    if (other !== undefined) {
      throw usageError(
        `the exports ${other} and ${exportName} both define an operation named ` +
          `${JSON.stringify(operation.name)}; pick one with --export`,
      );
    }
    byName.set(operation.name, exportName);
  }
}

/**
 * The module's error in one line: its kind when that says something (`SyntaxError`) and the
 * first line of its message. A stack trace would point into the loader, and a loader's code frame
 * would break the one-line report.
 */
function summarize(error: unknown): string {
  const message = describeError(error).split('\n')[0] ?? '';
  const kind = error instanceof Error && error.name !== 'Error' ? error.name : '';
  return kind && !message.startsWith(kind) ? `${kind}: ${message}` : message;
}
