import { parseArgs } from 'node:util';
import { DEFAULT_WALL_LIMIT_S, runScenarioCommand } from '../scenario/run-command.ts';
import type { Command } from './types.ts';

export const RUN_HELP = `Usage: iommu-lab run FILE [--seed N | --seeds LIST [--jobs N] [--shard I/N]
                      [--out FILE.jsonl]] [--json] [--trace FILE] [--log FILE]

Runs a scenario: a module (.mjs, .js or .ts) whose default export is
defineScenario({ name, ...lab options, async run(ctx) { ... } }). Each seed boots
a fresh lab; run(ctx) executes as a kernel task while virtual time moves.

One seed (--seed N, default 1): the kernel log is printed as it happens, then
PASS or FAIL with the failed assertion, the virtual time, the last kernel log
lines and the command that reproduces it.

A sweep (--seeds 1..1000, or 3,7,11): seeds run on worker threads, with a
progress line on stderr and a summary at the end (the first failing seeds and
how to reproduce each). A seed's result does not depend on --jobs or --shard.
  --jobs N             worker threads (default: one per core)
  --shard I/N          run every N-th seed of the list starting at the I-th;
                       auto/N takes I from JOB_COMPLETION_INDEX (Kubernetes)
  --out FILE.jsonl     one JSON line per seed; merge shards with 'iommu-lab report'

Limits (a scenario that never ends fails instead of hanging):
  --virtual-time-limit D  virtual time a seed may take (default 60s)
  --wall-time-limit D     wall-clock time a seed may take (default ${DEFAULT_WALL_LIMIT_S}s)
Durations take a unit: ns, us, ms or s (a bare number is seconds).

  --dry-run            check the arguments and print which seeds would run

Exit status: 0 every seed passed, 1 a seed failed or FILE is unusable, 2 usage.`;

export const runCommand: Command = {
  name: 'run',
  summary: 'run your own scenario file, once or over many seeds',
  help: RUN_HELP,
  async run(args, opts, io) {
    let parsed: ReturnType<typeof parse>;
    try {
      parsed = parse(args);
    } catch (e) {
      io.err(`iommu-lab run: ${e instanceof Error ? e.message : String(e)}\nTry 'iommu-lab run --help'.`);
      return 2;
    }
    const { values, positionals } = parsed;
    if (positionals.length !== 1) {
      io.err(
        positionals.length === 0
          ? "iommu-lab run: give the scenario file (e.g. iommu-lab run examples/map-unmap.mjs)\nTry 'iommu-lab run --help'."
          : `iommu-lab run: one scenario file at a time (got ${positionals.join(', ')})`,
      );
      return 2;
    }
    return runScenarioCommand(
      {
        file: positionals[0]!,
        seed: opts.seed,
        seeds: values.seeds ?? null,
        jobs: values.jobs ?? null,
        shard: values.shard ?? null,
        out: values.out ?? null,
        json: opts.json,
        trace: opts.trace,
        log: opts.log,
        virtualTimeLimit: values['virtual-time-limit'] ?? null,
        wallTimeLimit: values['wall-time-limit'] ?? null,
        dryRun: values['dry-run'] === true,
      },
      {
        out: io.out,
        err: io.err,
        writeFile: io.writeFile,
        env: process.env,
        clock: () => performance.now(),
        progress: progressWriter(),
      },
    );
  },
};

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      seeds: { type: 'string' },
      jobs: { type: 'string', short: 'j' },
      shard: { type: 'string' },
      out: { type: 'string', short: 'o' },
      'virtual-time-limit': { type: 'string' },
      'wall-time-limit': { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
  });
}

/** A bar redrawn in place on a terminal; plain lines (every 10%) otherwise. */
function progressWriter(): ((line: string, final: boolean) => void) | undefined {
  const tty = process.stderr.isTTY === true;
  let lastPct = -10;
  return (line, final) => {
    if (tty) {
      const m = /\((\d+)%\)/.exec(line);
      const pct = m ? Number(m[1]) : 0;
      const width = 24;
      const fill = Math.round((pct / 100) * width);
      process.stderr.write(
        `\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${line}\x1b[K${final ? '\n' : ''}`,
      );
      return;
    }
    const m = /\((\d+)%\)/.exec(line);
    const pct = m ? Number(m[1]) : 100;
    if (final || pct >= lastPct + 10) {
      lastPct = pct - (pct % 10);
      process.stderr.write(`${line}\n`);
    }
  };
}
