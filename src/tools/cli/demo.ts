import { scenarios } from '../demo/index.ts';
import { startMachine } from './run-machine.ts';
import type { Command } from './types.ts';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a built-in scenario on the simulated machine',
  help: `Usage: iommu-lab demo [SCENARIO] [--seed N] [--json] [--trace FILE] [--log FILE]

Runs a built-in scenario and prints its kernel-style log and a summary.

Scenarios:
${scenarios.map((s, i) => `  ${s.name.padEnd(16)}${i === 0 ? '(default) ' : ''}${s.summary}`).join('\n')}

With --json the output is one JSON object: the scenario's results and every trace event
(virtual time in ns). The output depends only on the scenario and the seed.
Exit status: 0 when the scenario behaved as designed, 1 otherwise.`,
  async run(args, opts, io) {
    const name = args[0] ?? scenarios[0]!.name;
    const sc = scenarios.find((s) => s.name === name);
    if (sc === undefined) {
      io.err(
        `iommu-lab demo: unknown scenario '${name}'. Scenarios: ${scenarios.map((s) => s.name).join(', ')}`,
      );
      return 2;
    }
    if (args.length > 1) {
      io.err(`iommu-lab demo: unexpected argument '${args[1]}' (one scenario at a time)`);
      return 2;
    }
    const run = startMachine(opts, io);
    const result = await sc.run(run.machine);
    await run.finish();
    if (opts.json) io.out(JSON.stringify({ ...(result as object), events: run.events }, null, 2));
    else {
      io.out('');
      for (const l of sc.report(result)) io.out(l);
    }
    return sc.ok(result) ? 0 : 1;
  },
};
