import { NotJsonError } from '../index.ts';

/**
 * The JSON text of a payload, as `JSON.stringify` writes it (keys in the order given), after
 * checking that JSON holds it as it is. The core's canonical JSON (request fingerprints) follows
 * `JSON.stringify` where it can, and so writes `undefined` and holes as null; a payload is
 * published to someone else, so here whatever `JSON.stringify` would change silently is refused:
 * `undefined` (a property too), functions, symbols, BigInt, non-finite numbers, cycles, holes in
 * a sparse array, an invalid `Date` (its `toJSON()` gives null), and class instances without
 * `toJSON()` (a `Map` would become `{}`). The messages are the core's, where the problem is one
 * the core also refuses.
 *
 * @throws {NotJsonError} naming where the problem is, e.g. `$.items[2].price`.
 */
export function payloadJson(payload: unknown): string {
  check(payload, '', '$', new Set());
  return JSON.stringify(payload);
}

function check(value: unknown, key: string, path: string, ancestors: Set<object>): void {
  if (value instanceof Date && Number.isNaN(value.getTime())) {
    throw new NotJsonError(path, 'is an invalid Date, which JSON would write as null');
  }
  const toJSON =
    typeof value === 'object' && value !== null
      ? (value as { toJSON?: unknown }).toJSON
      : undefined;
  const resolved =
    typeof toJSON === 'function' ? (toJSON as (key: string) => unknown).call(value, key) : value;
  switch (typeof resolved) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(resolved)) {
        throw new NotJsonError(path, `is ${resolved}, which JSON cannot hold`);
      }
      return;
    case 'undefined':
      throw new NotJsonError(path, 'is undefined, which JSON cannot hold');
    case 'object':
      break;
    default:
      throw new NotJsonError(path, `is a ${typeof resolved}, which JSON cannot hold`);
  }
  if (resolved === null) return;
  if (ancestors.has(resolved)) throw new NotJsonError(path, 'refers to itself (a cycle)');
  ancestors.add(resolved);
  if (Array.isArray(resolved)) {
    // By index, not forEach(): forEach skips the holes of a sparse array.
    for (let index = 0; index < resolved.length; index++) {
      const itemPath = `${path}[${index}]`;
      if (!(index in resolved)) {
        throw new NotJsonError(
          itemPath,
          'is a hole in a sparse array, which JSON would write as null',
        );
      }
      check(resolved[index], String(index), itemPath, ancestors);
    }
  } else {
    const prototype: unknown = Object.getPrototypeOf(resolved);
    if (prototype !== Object.prototype && prototype !== null) {
      const kind = (resolved.constructor as { name?: string } | undefined)?.name ?? 'class';
      throw new NotJsonError(path, `is a ${kind} instance, which has no JSON form`);
    }
    for (const [name, item] of Object.entries(resolved)) {
      // JSON.stringify omits undefined properties; a payload with one is a mistake to report.
      check(item, name, `${path}.${name}`, ancestors);
    }
  }
  ancestors.delete(resolved);
}
