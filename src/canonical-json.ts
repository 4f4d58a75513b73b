/**
 * Canonical JSON: one text per JSON value, whatever the order in which an object's keys were
 * written and whether an absent property was spelled `undefined`. The basis of request
 * fingerprints, so two requests that mean the same thing are recognised as the same request.
 */

/** Thrown for a value that has no JSON form (BigInt, a function, a cycle, NaN...). */
export class NotJsonError extends TypeError {
  /** Where in the value the problem is, e.g. `$.items[2].price`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`${path} ${problem}`);
    this.name = 'NotJsonError';
    this.path = path;
  }
}

/**
 * Serialises `value` as JSON with object keys sorted, recursively. Follows `JSON.stringify` where
 * it is unambiguous (`toJSON()` is honoured, `undefined` properties are omitted, `undefined` in an
 * array is `null`) and refuses what it would silently change: BigInt, functions, symbols,
 * non-finite numbers, cycles, and class instances other than those with `toJSON()` (a `Map` would
 * otherwise fingerprint as `{}`).
 */
export function canonicalJson(value: unknown): string {
  const resolved = applyToJson(value, '');
  if (resolved === undefined) throw new NotJsonError('$', 'is undefined, which JSON cannot hold');
  return write(resolved, '$', new Set());
}

/** `value.toJSON(key)` where it exists, as JSON.stringify calls it (a Date becomes its ISO text). */
function applyToJson(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  return typeof toJSON === 'function'
    ? (toJSON as (key: string) => unknown).call(value, key)
    : value;
}

function write(value: unknown, path: string, ancestors: Set<object>): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value))
        throw new NotJsonError(path, `is ${value}, which JSON cannot hold`);
      return JSON.stringify(value);
    case 'object':
      return value === null ? 'null' : writeObject(value, path, ancestors);
    default:
      throw new NotJsonError(path, `is a ${typeof value}, which JSON cannot hold`);
  }
}

function writeObject(value: object, path: string, ancestors: Set<object>): string {
  if (ancestors.has(value)) throw new NotJsonError(path, 'refers to itself (a cycle)');
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      // By index, not map(): a hole in a sparse array is null, as in JSON.stringify.
      const items: string[] = [];
      for (let index = 0; index < value.length; index++) {
        const item = applyToJson(value[index], String(index));
        items.push(item === undefined ? 'null' : write(item, `${path}[${index}]`, ancestors));
      }
      return `[${items.join(',')}]`;
    }
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) {
      const kind = (value.constructor as { name?: string } | undefined)?.name ?? 'class';
      throw new NotJsonError(path, `is a ${kind} instance, which has no JSON form`);
    }
    const record = value as Record<string, unknown>;
    const members: string[] = [];
    for (const name of Object.keys(record).sort()) {
      const member = applyToJson(record[name], name);
      if (member === undefined) continue;
      members.push(`${JSON.stringify(name)}:${write(member, `${path}.${name}`, ancestors)}`);
    }
    return `{${members.join(',')}}`;
  } finally {
    ancestors.delete(value);
  }
}
