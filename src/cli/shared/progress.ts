import type { CommandContext } from './define-command.ts';
import { formatDurationMs } from './format-table.ts';

/** A display of long work: the stage it is in, and how long it has taken so far. */
export interface Progress {
  /** The work moved to a new stage (`counting entries`): its time starts again. */
  stage(text: string): void;
  /** New text for the same stage (`deleted 5000 expired entries`), shown at the next redraw. */
  update(text: string): void;
  /** The work ended: a terminal's progress line is cleared. */
  done(): void;
}

/** How often a terminal's line is redrawn. */
const REDRAW_MS = 250;
/** A plain-line display writes nothing for stages shorter than this, then one line this often. */
const PLAIN_EVERY_MS = 10_000;

/**
 * Shows progress on standard error. On a terminal (`context.stderrIsTTY`), one line redrawn in
 * place with the stage and its time so far, cleared at the end. Elsewhere (a script, a log), plain
 * lines, and only for a stage that lasts: one after `plainEveryMs` and one more each `plainEveryMs`,
 * so that a quick run writes nothing and a log of a slow one says what it was doing. Nothing is
 * shown before the first `stage()`: the display starts with it.
 *
 * @example
 * ```ts
 * const progress = startProgress(context, 'stats');
 * progress.stage('counting entries');
 * try { await work(); } finally { progress.done(); }
 * ```
 */
export function startProgress(
  context: Pick<CommandContext, 'stderr' | 'stderrIsTTY'>,
  command: string,
  { plainEveryMs = PLAIN_EVERY_MS }: { plainEveryMs?: number } = {},
): Progress {
  const tty = context.stderrIsTTY === true;
  let text = '';
  let startedAt = performance.now();
  let lastPlainAt = startedAt;
  let drawn = false;
  const elapsed = () => formatDurationMs(performance.now() - startedAt);
  const draw = () => {
    if (tty) {
      // \r and "erase to end of line": the line is rewritten where it stands.
      context.stderr(`\r\x1b[K${command}: ${text}... ${elapsed()}`);
      drawn = true;
    } else if (performance.now() - lastPlainAt >= plainEveryMs) {
      context.stderr(`${command}: ${text} (${elapsed()} so far)\n`);
      lastPlainAt = performance.now();
    }
  };
  // Started by the first stage: before it there is nothing to show (a connection being opened).
  let timer: ReturnType<typeof setInterval> | undefined;
  return {
    stage(next) {
      text = next;
      startedAt = performance.now();
      lastPlainAt = startedAt;
      if (timer === undefined) {
        timer = setInterval(draw, tty ? REDRAW_MS : Math.min(plainEveryMs, 1000));
        // The display must never keep the process alive.
        timer.unref();
      }
      if (tty || plainEveryMs === 0) draw();
    },
    update(next) {
      text = next;
    },
    done() {
      clearInterval(timer);
      if (drawn) context.stderr('\r\x1b[K');
      drawn = false;
    },
  };
}
