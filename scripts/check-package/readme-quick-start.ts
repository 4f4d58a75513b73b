/**
 * What the README's quick start leaves to the reader's application: a `DB` interface for Kysely
 * and an `authenticate` middleware that puts the merchant on Express's request. Declared
 * globally, beside the snippet, so that the snippet compiles exactly as written.
 */
export const QUICK_START_DECLARATIONS = `// The reader's own application, which the README's quick start assumes.
interface DB {
  payments: {
    id: import('kysely').Generated<string>;
    merchant_id: string;
    amount_cents: number;
  };
}
declare namespace Express {
  interface Request {
    merchantId: string;
  }
}
declare const authenticate: import('express').RequestHandler;
`;

/**
 * The first fenced TypeScript block under the README's "## Quick start" heading, as written.
 *
 * @example
 * ```ts
 * const snippet = extractQuickStart(await readFile('README.md', 'utf8'));
 * ```
 */
export function extractQuickStart(readme: string): string {
  const lines = readme.split('\n');
  const heading = lines.findIndex((line) => line.trim() === '## Quick start');
  if (heading === -1) throw new Error('README.md has no "## Quick start" heading');
  const nextHeading = lines.findIndex((line, index) => index > heading && /^## /.test(line));
  const section = lines.slice(heading + 1, nextHeading === -1 ? undefined : nextHeading);
  const open = section.findIndex((line) => /^```(ts|typescript)\s*$/.test(line));
  const close = section.findIndex((line, index) => index > open && /^```\s*$/.test(line));
  if (open === -1 || close === -1) {
    throw new Error('README.md has no complete ```ts block under "## Quick start"');
  }
  return `${section.slice(open + 1, close).join('\n')}\n`;
}
