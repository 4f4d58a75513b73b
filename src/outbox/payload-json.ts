import { NotJsonError } from '../index.ts';

/**
 * The JSON text of a payload, as `JSON.stringify` writes it (keys in the order given), after
 * checking that it would not change the value silently: `undefined`, functions, symbols, BigInt,
 * non-finite numbers, cycles and class instances without `toJSON()` (a `Map` would become `{}`)
 * are refused.
 *
 * @throws {NotJsonError} naming where the problem is, e.g. `$.items[2].price`.
 */
export function payloadJson(payload: unknown): string {
  check(payload, '$', new Set());
  return JSON.stringify(payload);
}

function check(value: unknown, path: string, ancestors: Set<object>): void {
  const resolved =
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
      ? (value as { toJSON(): unknown }).toJSON()
      : value;
  switch (typeof resolved) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(resolved)) throw new NotJsonError(path, 'is not a finite number');
      return;
    case 'object':
      break;
    default:
      throw new NotJsonError(path, `is ${typeof resolved}, which JSON cannot hold`);
  }
  if (resolved === null) return;
  if (ancestors.has(resolved)) throw new NotJsonError(path, 'is a cycle');
  ancestors.add(resolved);
  if (Array.isArray(resolved)) {
    resolved.forEach((item, index) => {
      check(item, `${path}[${index}]`, ancestors);
    });
  } else {
    const prototype: unknown = Object.getPrototypeOf(resolved);
    if (prototype !== Object.prototype && prototype !== null) {
      throw new NotJsonError(path, 'is a class instance without toJSON()');
    }
    for (const [key, item] of Object.entries(resolved)) {
      // JSON.stringify omits undefined properties; a payload with one is a mistake to report.
      check(item, `${path}.${key}`, ancestors);
    }
  }
  ancestors.delete(resolved);
}
