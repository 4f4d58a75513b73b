/**
 * A Kysely plugin that holds back the result of chosen statements: the statement has run and
 * committed, but the caller sees its result only when the test lets it go. It pauses a relay at
 * an exact point of its work, as a long GC pause or a slow network would.
 */
import type {
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';

/**
 * @param marker - A piece of the statement's SQL text that tells it apart.
 * @param gate - Called with 1, 2, 3... for each matching statement whose result arrived; the
 *   result is handed over when the returned promise resolves.
 *
 * @example
 * ```ts
 * const held = fx.db.withPlugin(holdResults('with recursive heads', () => bothArrived));
 * ```
 */
export function holdResults(marker: string, gate: (count: number) => Promise<void>): KyselyPlugin {
  const matching = new WeakSet<object>();
  let count = 0;
  return {
    transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
      if (node.kind === 'RawNode' && node.sqlFragments.join('?').includes(marker)) {
        matching.add(queryId);
      }
      return node;
    },
    async transformResult({
      queryId,
      result,
    }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
      if (matching.has(queryId)) {
        count += 1;
        await gate(count);
      }
      return result;
    },
  };
}
