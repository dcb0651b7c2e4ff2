import type { SanitizeMode } from '../../platform/sanitizer.ts';
import { type RunIo, runScenarioCommand } from '../scenario/run-command.ts';
import { UsageError } from './errors.ts';
import type { RunContext } from './types.ts';

/** The runner's view of the CLI: output, files through the CLI's safe writes, a progress line. */
export function runIo(ctx: RunContext): RunIo {
  return {
    out: ctx.io.out,
    err: ctx.io.err,
    writeFile: ctx.io.writeFile,
    output: ctx.output,
    env: process.env,
    clock: () => performance.now(),
    progress: progressWriter(),
  };
}

export async function run(ctx: RunContext): Promise<number> {
  const file = ctx.args[0];
  if (file === undefined)
    throw new UsageError('give the scenario file (e.g. iommu-lab run examples/map-dma-unmap.mjs)');
  const o = ctx.options;
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : null);
  return runScenarioCommand(
    {
      file,
      seed: ctx.global.seed,
      seeds: str('seeds'),
      jobs: str('jobs'),
      shard: str('shard'),
      out: str('out'),
      json: ctx.global.json,
      trace: ctx.global.trace !== null,
      log: ctx.global.log !== null,
      virtualTimeLimit: str('virtual-time-limit'),
      wallTimeLimit: str('wall-time-limit'),
      dryRun: o['dry-run'] === true,
      sanitize: sanitizeOption(o),
      inject: str('inject'),
    },
    runIo(ctx),
  );
}

/** The --sanitize[=MODE] option's value (undefined or 'off' when not given: off). */
export function sanitizeOption(o: RunContext['options']): SanitizeMode | null {
  const v = o.sanitize;
  return typeof v === 'string' ? (v as SanitizeMode) : null;
}

/** A bar redrawn in place on a terminal; plain lines (every 10%) otherwise. */
function progressWriter(): (line: string, final: boolean) => void {
  const tty = process.stderr.isTTY === true;
  let lastPct = 0;
  return (line, final) => {
    const m = /\((\d+)%\)/.exec(line);
    const pct = m ? Number(m[1]) : 100;
    if (tty) {
      const width = 24;
      const fill = Math.round((pct / 100) * width);
      process.stderr.write(
        `\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${line}\x1b[K${final ? '\n' : ''}`,
      );
      return;
    }
    if (final || pct >= lastPct + 10) {
      lastPct = pct - (pct % 10);
      process.stderr.write(`${line}\n`);
    }
  };
}
