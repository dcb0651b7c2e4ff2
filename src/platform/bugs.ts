/**
 * Bugs found in the code running on the machine (the kernel model, device drivers):
 * sleeping in atomic context, double frees, crashed kernel threads. They are recorded and
 * traced, never thrown, so a run continues as Linux does after a WARN or a BUG splat.
 */

export type BugKind =
  | 'might-sleep'
  | 'page-double-free'
  | 'page-bad-free'
  | 'task-crash'
  | 'irq-nobody-cared'
  | 'dma-api'
  | 'warn';

export interface BugStack {
  /** What this stack is (e.g. "sleeping call", "atomic context entered"). */
  readonly label: string;
  readonly stack: string;
}

export interface BugReport {
  readonly kind: BugKind;
  readonly time: number;
  readonly message: string;
  readonly stacks: readonly BugStack[];
}

export type BugSink = (r: BugReport) => void;

/**
 * A stack trace of the caller, without this helper's own frames, at most `limit` frames deep.
 * Costly (formatting, source maps): for reports, never on a hot path.
 */
export function captureStack(skip = 1, limit = 10): string {
  const keep = Error.stackTraceLimit;
  Error.stackTraceLimit = limit + skip;
  let s: string;
  try {
    s = new Error().stack ?? '';
  } finally {
    Error.stackTraceLimit = keep;
  }
  return s
    .split('\n')
    .slice(1 + skip)
    .map((l) => l.trim())
    .join('\n');
}
