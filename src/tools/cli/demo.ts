import { fileURLToPath } from 'node:url';
import { DEMOS } from '../demo/index.ts';
import { runScenarioCommand } from '../scenario/run-command.ts';
import type { Command } from './types.ts';

/** A bundled demo's module, beside this one: .ts in the sources, .js once built. */
function demoModule(name: string): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`../demo/${name}${ext}`, import.meta.url));
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a built-in scenario on the simulated machine',
  help: `Usage: iommu-lab demo [SCENARIO] [--seed N] [--json] [--trace FILE] [--log FILE]

Runs a bundled scenario: 'iommu-lab demo NAME' is 'iommu-lab run' on the scenario
module that comes with iommu-lab (same output, options and exit status). The kernel
log is printed as it happens, then PASS or FAIL and a summary.

Scenarios:
${DEMOS.map((s, i) => `  ${s.name.padEnd(16)}${i === 0 ? '(default) ' : ''}${s.description}`).join('\n')}

With --json the output is one JSON object: the run's outcome, the scenario's results
under "result", and every trace event (virtual time in ns). The output depends only on
the scenario and the seed.
Exit status: 0 when the scenario behaved as designed, 1 otherwise.`,
  async run(args, opts, io) {
    const name = args[0] ?? DEMOS[0].name;
    if (!DEMOS.some((s) => s.name === name)) {
      io.err(`iommu-lab demo: unknown scenario '${name}'. Scenarios: ${DEMOS.map((s) => s.name).join(', ')}`);
      return 2;
    }
    if (args.length > 1) {
      io.err(`iommu-lab demo: unexpected argument '${args[1]}' (one scenario at a time)`);
      return 2;
    }
    return runScenarioCommand(
      {
        file: demoModule(name),
        seed: opts.seed,
        seeds: null,
        jobs: null,
        shard: null,
        out: null,
        json: opts.json,
        trace: opts.trace,
        log: opts.log,
        virtualTimeLimit: null,
        wallTimeLimit: null,
        reproPrefix: `iommu-lab demo ${name}`,
      },
      io,
    );
  },
};
