import { parseArgs } from 'node:util';
import { usageError } from './cli-error.ts';

/** The flags a command takes: a string flag has a value (`--schema NAME`), a boolean none. */
export type FlagSpec = Readonly<Record<string, { type: 'string' | 'boolean' }>>;

/** The flags given on the command line, typed after their spec; absent ones are undefined. */
export type FlagValues<S extends FlagSpec> = {
  [K in keyof S]?: S[K]['type'] extends 'string' ? string : boolean;
};

/** What {@link parseFlags} found: a request for help, or the flags to run with. */
export type ParsedFlags<S extends FlagSpec> =
  | { help: true }
  | { help: false; values: FlagValues<S> };

/**
 * Parses a command's arguments against its own flags. `-h`/`--help` anywhere wins. Any other
 * flag the command does not take, a missing or extra value, a flag given twice, or a positional
 * argument is a usage error that names it (a positional argument by its position only: its value
 * may be a secret), so nothing runs on a misread command line.
 *
 * @example
 * ```ts
 * parseFlags(['--schema', 'app'], { schema: { type: 'string' } });
 * // { help: false, values: { schema: 'app' } }
 * parseFlags(['--batch-size', '5'], { schema: { type: 'string' } });
 * // throws: unknown option --batch-size
 * ```
 */
export function parseFlags<S extends FlagSpec>(argv: readonly string[], spec: S): ParsedFlags<S> {
  // Not strict: parseArgs' own errors are long-winded; the tokens let us say exactly what is wrong.
  const { tokens } = parseArgs({
    args: [...argv],
    options: { ...spec, help: { type: 'boolean', short: 'h' } },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  if (tokens.some((token) => token.kind === 'option' && token.name === 'help')) {
    return { help: true };
  }
  const values: Record<string, string | boolean> = {};
  for (const token of tokens) {
    if (token.kind === 'positional') {
      // Named by its position among the command's arguments, never quoted: a stray argument is
      // often a key given without --key, and an error message ends up in logs.
      throw usageError(
        `unexpected argument #${token.index + 1} (not shown: it may be a key; every value follows its flag)`,
      );
    }
    if (token.kind !== 'option') continue;
    const flag = Object.hasOwn(spec, token.name) ? spec[token.name] : undefined;
    if (flag === undefined) throw usageError(`unknown option ${token.rawName}`);
    if (Object.hasOwn(values, token.name)) {
      throw usageError(`${token.rawName} is given more than once`);
    }
    if (flag.type === 'boolean') {
      if (token.value !== undefined) throw usageError(`${token.rawName} takes no value`);
      values[token.name] = true;
    } else {
      // `--schema --loop` would otherwise take "--loop" as the schema's name; `--batch-size -5`
      // is a negative number, refused with the flag's own message.
      const flagLike = !token.inlineValue && /^-(?!\d)/.test(token.value ?? '');
      if (token.value === undefined) throw usageError(`${token.rawName} needs a value`);
      if (flagLike) {
        // The value is not quoted: it may be a key that starts with "-".
        throw usageError(
          `${token.rawName} needs a value (one that starts with "-" is given as ${token.rawName}=VALUE)`,
        );
      }
      values[token.name] = token.value;
    }
  }
  return { help: false, values: values as FlagValues<S> };
}
