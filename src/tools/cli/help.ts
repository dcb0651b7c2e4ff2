/** Help text of the CLI and of each command, built from the declarations and wrapped at 80 columns. */

import { GLOBAL_OPTIONS } from './grammar.ts';
import type { Command, OptionSpec } from './types.ts';

export const HELP_WIDTH = 80;

/**
 * Wrap one line at `width` columns at spaces; continuation lines start with `indent` spaces (by
 * default, the line's own indentation). Spacing within a line is kept; a word longer than a line
 * stays whole.
 */
export function wrapLine(line: string, indent?: number, width = HELP_WIDTH): string[] {
  const body = line.trimStart();
  const lead = line.slice(0, line.length - body.length);
  const out: string[] = [];
  let cur = lead;
  let gap = '';
  for (const part of body.split(/( +)/)) {
    if (part === '') continue;
    if (part[0] === ' ') {
      gap = part;
      continue;
    }
    if (cur.trim() !== '' && cur.length + gap.length + part.length > width) {
      out.push(cur);
      cur = ' '.repeat(indent ?? lead.length) + part;
    } else cur += gap + part;
    gap = '';
  }
  out.push(cur);
  return out;
}

/** Wrap every line of a text that is longer than the width (short lines keep their layout). */
export function wrap(text: string): string {
  return text
    .split('\n')
    .flatMap((l) => (l.length > HELP_WIDTH ? wrapLine(l) : [l]))
    .join('\n');
}

/** `  -h, --help  text`, aligned in a column, help wrapped with a hanging indent. */
function optionTable(specs: readonly OptionSpec[]): string {
  const left = specs.map(
    (s) =>
      `  ${s.short ? `-${s.short}, ` : ''}--${s.name}${s.value === undefined ? '' : s.optionalValue !== undefined ? `[=${s.value}]` : ` ${s.value}`}`,
  );
  const col = Math.min(Math.max(...left.map((l) => l.length)) + 2, 26);
  return specs
    .flatMap((s, i) => {
      const l = left[i]!;
      if (l.length + 2 > col) return [l, ...wrapLine(' '.repeat(col) + s.help, col)];
      return wrapLine(l.padEnd(col) + s.help, col);
    })
    .join('\n');
}

const EXIT_STATUS = (failure: string) =>
  wrapLine(
    `Exit status: 0 success; 1 ${failure}; 2 usage error; 70 internal error (a bug in iommu-lab: please report it).`,
    0,
  ).join('\n');

const OUTPUT_FILES = `Output files (--trace, --log) are written when the run ends, in one step (a
temporary file in the same folder, then renamed); a command line that is refused
leaves them untouched.`;

export function globalHelp(version: string, commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return wrap(`iommu-lab ${version}: an executable model of the IOMMU stack (Arm SMMUv3, the Linux IOMMU subsystem)

Usage: iommu-lab [global options] COMMAND [arguments and options]
       iommu-lab help COMMAND

Commands:
${commands.map((c) => wrapLine(`  ${c.name.padEnd(width)}  ${c.summary}`, width + 4).join('\n')).join('\n')}

Global options (anywhere on the line; a command refuses those that mean nothing
to it, and its help lists those it takes):
${optionTable(GLOBAL_OPTIONS)}

${OUTPUT_FILES}

${EXIT_STATUS('the run failed or its input was bad (an unreadable file, a malformed device tree, a scenario that failed)')}

Run 'iommu-lab COMMAND --help' for a command's own arguments and options.`);
}

export function commandHelp(c: Command, details: string | null): string {
  const globals = GLOBAL_OPTIONS.filter(
    (g) => g.name === 'help' || (c.globals as readonly string[]).includes(g.name),
  );
  const parts = [
    c.usage.map((u, i) => `${i === 0 ? 'Usage:' : '      '} iommu-lab ${u}`).join('\n'),
    c.description,
    ...(details ? [details] : []),
    ...(c.options.length ? [`Options:\n${optionTable(c.options)}`] : []),
    `Global options:\n${optionTable(globals)}`,
    ...(c.globals.includes('trace') || c.globals.includes('log') ? [OUTPUT_FILES] : []),
    EXIT_STATUS(c.failure),
  ];
  return wrap(parts.join('\n\n'));
}
