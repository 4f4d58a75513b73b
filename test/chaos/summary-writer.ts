/** The shape every chaos summary shares: aligned rows, then the violations or a clean verdict. */

export const count = new Intl.NumberFormat('en-US');
const SHOWN_VIOLATIONS = 12;

export const mark = (ok: boolean) => (ok ? '✓' : '✗');

/**
 * Starts a summary under `title`; `row()` adds `label value   note` lines, with labels padded to
 * `labelWidth`; `end()` adds the violations (the first 12, and the command that reruns the seed)
 * or the clean verdict, and returns the text.
 */
export function summaryWriter(title: string, labelWidth: number) {
  const lines = [title];
  return {
    row(label: string, value: number | string, note = '') {
      const shown = typeof value === 'number' ? count.format(value) : value;
      lines.push(`  ${label.padEnd(labelWidth)}${shown.padStart(7)}${note ? `   ${note}` : ''}`);
    },
    end(violations: readonly string[], seed: number, rerun: string): string {
      if (violations.length > 0) {
        lines.push(
          `  ✗ ${violations.length} violation(s), seed ${seed}; run again with:`,
          `    ${rerun}`,
          ...violations.slice(0, SHOWN_VIOLATIONS).map((violation) => `    ${violation}`),
        );
        if (violations.length > SHOWN_VIOLATIONS) {
          lines.push(`    ... and ${violations.length - SHOWN_VIOLATIONS} more`);
        }
      } else {
        lines.push(`  ✓ no violations (rerun: ${rerun})`);
      }
      return lines.join('\n');
    },
  };
}
