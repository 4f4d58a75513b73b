/**
 * The type a value has after a JSON round trip, `JSON.parse(JSON.stringify(value))`: what
 * {@link withIdempotency} returns for `fn`'s value when no `responseSchema` is given. A `Date`
 * becomes a `string` (through its `toJSON()`), functions and symbols disappear from objects.
 * `undefined` at the top stays `undefined` (the library stores it as such).
 *
 * @example
 * ```ts
 * type Stored = Jsonified<{ id: string; at: Date }>;
 * // { id: string; at: string }
 * ```
 */
export type Jsonified<T> = T extends { toJSON(...args: never[]): infer J }
  ? Jsonified<J>
  : T extends string | number | boolean | null | undefined
    ? T
    : T extends bigint | symbol | ((...args: never[]) => unknown)
      ? never
      : T extends readonly (infer Item)[]
        ? Jsonified<Item>[]
        : T extends object
          ? { [P in keyof T as P extends string ? P : never]: Jsonified<T[P]> }
          : never;
